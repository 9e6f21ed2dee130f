# shellcheck shell=bash
# Shared helpers for scripts/test and scripts/run-broker (sourced, not run).
#
#   mdp_require_packages PKG...   install the Debian packages that are missing
#                                 (as root), or print the command and fail
#   mdp_configure DIR OPTION...   meson setup DIR: fresh, --reconfigure, or
#                                 --wipe when the given options changed
#
# Everything prints to stderr prefixed with the calling script's name.

MDP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MDP_PROG=${MDP_PROG:-$(basename "$0")}

# What every build needs; callers add e.g. valgrind.
# shellcheck disable=SC2034  # used by the scripts that source this file
MDP_BASE_PACKAGES=(gcc g++ libc6-dev pkg-config meson ninja-build libzmq3-dev libuv1-dev)
# mdp-broker --metrics (optional: meson -Dmetrics=auto builds it when
# libmicrohttpd is there) and the tools its tests run: promtool and a real
# Prometheus (test 'metrics' skips them outside CI if missing).
# shellcheck disable=SC2034
MDP_METRICS_PACKAGES=(libmicrohttpd-dev prometheus)

mdp_say() { printf '%s: %s\n' "$MDP_PROG" "$*" >&2; }

mdp_pkg_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# Installs the packages in "$@" that are missing.  Returns non-zero (after
# printing what to do) if they cannot be installed.
mdp_require_packages() {
  local missing=() p
  if ! command -v dpkg-query >/dev/null 2>&1; then
    # Not Debian: check for the tools and libraries themselves.
    local ok=1 t
    for t in cc pkg-config meson ninja; do
      command -v "$t" >/dev/null 2>&1 || { mdp_say "missing: $t"; ok=0; }
    done
    if command -v pkg-config >/dev/null 2>&1; then
      pkg-config --exists 'libzmq >= 4.3' || { mdp_say "missing: libzmq >= 4.3 (pkg-config libzmq)"; ok=0; }
      pkg-config --exists 'libuv >= 1.44' || { mdp_say "missing: libuv >= 1.44 (pkg-config libuv)"; ok=0; }
    fi
    [ $ok = 1 ] && return 0
    mdp_say "not a Debian system: install a C compiler, pkg-config, meson, ninja, libzmq (>= 4.3) and libuv (>= 1.44) development files"
    return 1
  fi
  for p in "$@"; do
    mdp_pkg_installed "$p" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0

  if [ "$(id -u)" -ne 0 ]; then
    mdp_say "missing Debian packages: ${missing[*]}"
    mdp_say "install them with:"
    printf '  sudo apt-get update && sudo apt-get install -y %s\n' "${missing[*]}" >&2
    return 1
  fi
  mdp_say "installing: ${missing[*]}"
  if [ -z "${MDP_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2 || {
      mdp_say "apt-get update failed"; return 1; }
    export MDP_APT_UPDATED=1   # once per run, also across nested scripts
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" </dev/null >&2 || { mdp_say "apt-get install failed"; return 1; }
  for p in "${missing[@]}"; do
    mdp_pkg_installed "$p" || { mdp_say "still missing after install: $p"; return 1; }
  done
}

# Prints the current value of each meson option named in "$@" (name=value
# lines, in order), read from DIR's introspection data.
mdp_current_options() {
  local dir=$1; shift
  meson introspect --buildoptions "$dir" 2>/dev/null | python3 -c '
import json, sys
want = sys.argv[1:]
opts = {o["name"]: o["value"] for o in json.load(sys.stdin)}
for n in want:
    v = opts.get(n, "?")
    if isinstance(v, list):
        v = ",".join(v)
    elif isinstance(v, bool):
        v = "true" if v else "false"
    print("%s=%s" % (n, v))
' "$@"
}

# mdp_configure DIR -Dname=value...: sets up DIR with exactly these options.
# A new DIR is set up; an existing one is reconfigured, or wiped and set up
# again when one of the options differs (or reconfiguring fails).
mdp_configure() {
  local dir=$1; shift
  local names=() want=() o
  for o in "$@"; do
    o=${o#-D}
    names+=("${o%%=*}")
    want+=("$o")
  done
  if [ ! -f "$dir/meson-private/coredata.dat" ]; then
    mdp_say "configuring $dir: $*"
    meson setup "$dir" "$MDP_ROOT" "$@" >&2
    return
  fi
  local have
  have=$(mdp_current_options "$dir" "${names[@]}")
  if [ "$have" = "$(printf '%s\n' "${want[@]}")" ]; then
    meson setup --reconfigure "$dir" "$MDP_ROOT" "$@" >&2 && return 0
    mdp_say "reconfiguring $dir failed; wiping it"
  else
    mdp_say "options of $dir changed (${have//$'\n'/ } -> ${want[*]}); wiping it"
  fi
  meson setup --wipe "$dir" "$MDP_ROOT" "$@" >&2
}
