#!/usr/bin/env bash
# `meson install` into a temporary root, then build and run a program
# against it through pkg-config, as a user of the library would.  TAP.
set -u
build=${MDP_BUILD_DIR:?MDP_BUILD_DIR not set}
root=$(mktemp -d "${TMPDIR:-/tmp}/mdp-install.XXXXXX")
trap 'rm -rf "$root"' EXIT
n=0 failed=0
check() { # description, command...
  local what=$1; shift
  n=$((n + 1))
  if "$@" >"$root/out" 2>&1; then
    echo "ok $n - $what"
  else
    echo "not ok $n - $what"; sed 's/^/# /' "$root/out"; failed=$((failed + 1))
  fi
}

check "meson install into a staging root" \
  meson install -C "$build" --no-rebuild --destdir "$root/stage"
pc=$(find "$root/stage" -name libmdp.pc | head -n 1)
check "libmdp.pc installed" test -n "$pc"
for f in mdp.h mdp/broker.h mdp/worker.h mdp/client.h mdp/reactor.h mdp/codec.h \
  mdp/worker_group.h; do
  check "header $f installed" test -n "$(find "$root/stage" -path "*/include/$f")"
done
for t in mdp-broker mdp-request mdp-worker mdp-keygen; do
  check "tool $t installed" test -n "$(find "$root/stage" -path "*/bin/$t")"
done
check "default config mdp-broker.conf installed (sysconfdir)" \
  test -n "$(find "$root/stage" -path '*/etc/mdp-broker.conf')"
if [ "${MDP_HAVE_SYSTEMD:-0}" = 1 ]; then
  check "systemd unit installed, ExecStart at the installed broker" \
    bash -c "grep -qx 'ExecStart=.*/bin/mdp-broker -c .*/etc/mdp-broker.conf' \$(find '$root/stage' -name mdp-broker.service -path '*/systemd/system/*')"
else
  check "no systemd unit installed without libsystemd" \
    test -z "$(find "$root/stage" -name mdp-broker.service)"
fi
check "static and shared libraries installed" \
  bash -c "ls '$root'/stage/usr/local/lib*/{,*/}libmdp.a '$root'/stage/usr/local/lib*/{,*/}libmdp.so 2>/dev/null | grep -c . | grep -qx 2"

cat >"$root/app.c" <<'C'
#include <mdp.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mdp_broker_options_t o;
  mdp_broker_options_init(&o);
  mdp_broker_t *b;
  if (mdp_broker_new(&loop, &o, &b) != 0 ||
      mdp_broker_bind(b, "inproc://install-test") != 0)
    return 1;
  mdp_broker_close(b, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  mdp_zmq_context_term();
  puts(mdp_strerror(MDP_EHEADER));
  return uv_loop_close(&loop);
}
C
export PKG_CONFIG_SYSROOT_DIR="$root/stage" PKG_CONFIG_PATH=$(dirname "$pc")
# A sanitizer build's library needs the sanitizer runtime in the program.
san=""
case ${MDP_SANITIZE:-none} in none|"") ;; *) san="-fsanitize=$MDP_SANITIZE" ;; esac
check "a program builds with pkg-config --cflags --libs libmdp" \
  bash -c "cc $san '$root/app.c' -o '$root/app' \$(pkg-config --cflags --libs libmdp)"
libdir=$(dirname "$(find "$root/stage" -name 'libmdp.so' | head -n 1)")
check "and runs against the installed shared library" \
  bash -c "LD_LIBRARY_PATH='$libdir' '$root/app' | grep -qx 'wrong protocol header frame'"
echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
