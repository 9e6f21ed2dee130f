#!/usr/bin/env bash
# fuzz/run.sh [SECONDS]: build the libFuzzer targets with clang (ASan + UBSan)
# and run each one for SECONDS (default 30) on a copy of its seed corpus, so
# the repository is left untouched.  Exits non-zero if a target crashes,
# leaks or trips a sanitizer, or if the build fails.
#
# Needs the Debian packages clang and libclang-rt-14-dev (plus the usual
# build dependencies).  Environment:
#   MDP_FUZZ_BUILDDIR  build directory (default build-fuzz)
#   MDP_FUZZ_TARGETS   targets to run (default "fuzz_broker fuzz_codec")
#   MDP_FUZZ_ARGS      extra libFuzzer arguments (e.g. "-jobs=2 -workers=2")
#   MDP_FUZZ_KEEP      directory to keep the grown corpora and any crash
#                      files in (default: a temporary directory, removed
#                      unless something crashed)
# docs/reliability.md says how to run longer and what to do with a crash.
set -euo pipefail

secs=${1:-30}
if ! [[ $secs =~ ^[0-9]+$ ]] || (( secs == 0 )); then
  echo "usage: fuzz/run.sh [SECONDS]   (SECONDS > 0, default 30)" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
builddir=${MDP_FUZZ_BUILDDIR:-build-fuzz}
targets=${MDP_FUZZ_TARGETS:-fuzz_broker fuzz_codec}
read -ra extra <<<"${MDP_FUZZ_ARGS:-}"

for tool in clang meson ninja; do
  if ! command -v "$tool" >/dev/null; then
    echo "fuzz/run.sh: $tool not found (apt-get install clang libclang-rt-14-dev meson ninja-build)" >&2
    exit 2
  fi
done

if [[ ! -f $builddir/build.ninja ]]; then
  CC=clang meson setup "$builddir" -Dfuzz=true -Db_lundef=false
else
  meson configure "$builddir" -Dfuzz=true -Db_lundef=false >/dev/null
fi
for t in $targets; do
  ninja -C "$builddir" "fuzz/$t"
done

if [[ -n ${MDP_FUZZ_KEEP:-} ]]; then
  work=$MDP_FUZZ_KEEP
  mkdir -p "$work"
  keep=1
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/libmdp-fuzz.XXXXXX")
  keep=0
fi

failed=0
for t in $targets; do
  corpus=$work/$t/corpus
  artifacts=$work/$t/artifacts
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "=== fuzz/run.sh: $t for ${secs}s ($(ls "$corpus" | wc -l) seeds)"
  rc=0
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$builddir/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" "${extra[@]}" \
      "$corpus" 2>&1 | tee "$work/$t/log" | grep -E '^(#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|Done |==[0-9]+==|SUMMARY|.*fuzz check failed)' || true
  rc=${PIPESTATUS[0]}
  if (( rc != 0 )) || [[ -n $(ls -A "$artifacts") ]]; then
    echo "=== fuzz/run.sh: $t FAILED (exit $rc); log and reproducer in $work/$t" >&2
    tail -n 60 "$work/$t/log" >&2
    failed=1
  else
    echo "=== fuzz/run.sh: $t ok"
  fi
done

if (( failed )); then
  echo "fuzz/run.sh: FAILED; reproduce with: $builddir/fuzz/<target> <crash file>" >&2
  exit 1
fi
(( keep )) || rm -rf "$work"
echo "fuzz/run.sh: all targets ran ${secs}s without a failure"
