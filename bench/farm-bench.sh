#!/usr/bin/env bash
# bench/farm-bench.sh BUILD NBROKERS [COUNT] [CONCURRENCY]: a farm on this
# machine, fresh processes: NBROKERS mdp-broker on 127.0.0.1, one mdp-worker
# (-c 4 --echo) on all of them, and mdp-request -n COUNT (default 20000)
# -c CONCURRENCY (default 32) spreading over them; prints mdp-request's
# summary line.  docs/farm.md's figures come from it, e.g.
#   for r in 1 2 3; do bench/farm-bench.sh build-rel 1; bench/farm-bench.sh build-rel 3; done
set -euo pipefail
build=${1:?usage: farm-bench.sh BUILD NBROKERS [COUNT] [CONCURRENCY]}
n=${2:?usage: farm-bench.sh BUILD NBROKERS [COUNT] [CONCURRENCY]}
count=${3:-20000}
conc=${4:-32}
tools=$build/tools
pids=()
args=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
base=$((20000 + RANDOM % 20000))
for i in $(seq 1 "$n"); do
  ep=tcp://127.0.0.1:$((base + i))
  "$tools/mdp-broker" -b "$ep" >/dev/null 2>&1 &
  pids+=($!)
  args+=(-b "$ep")
done
sleep 0.3
"$tools/mdp-worker" "${args[@]}" -C 4 --echo svc >/dev/null 2>&1 &
pids+=($!)
sleep 1
"$tools/mdp-request" "${args[@]}" -n "$count" -C "$conc" svc x
