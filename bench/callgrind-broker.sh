#!/usr/bin/env bash
# bench/callgrind-broker.sh: profile one broker (mdp-broker, or the baseline)
# under callgrind on a fixed workload and print the functions that cost the
# most instructions.
#   bench/callgrind-broker.sh BUILD_DIR [mdp|baseline] [ROUND_TRIPS] [CLIENTS] [BODY]
# Example: bench/callgrind-broker.sh build-bench mdp 5000 8 16
set -euo pipefail
build=${1:?build directory}; kind=${2:-mdp}; n=${3:-5000}; clients=${4:-8}; body=${5:-16}
bench="$build/tools/mdp-bench"; broker="$build/tools/mdp-broker"
port=$((20000 + RANDOM % 20000)); ep="tcp://127.0.0.1:$port"
out=$(mktemp /tmp/callgrind.XXXXXX)
if [ "$kind" = baseline ]; then
  cmd=("$bench" --role baseline "endpoint=$ep")
else
  cmd=("$broker" -b "$ep" -q)
fi
valgrind --tool=callgrind -q --callgrind-out-file="$out" "${cmd[@]}" & bpid=$!
"$bench" --role worker "endpoint=$ep" "workers=$clients" >/dev/null & wpid=$!
# One measured phase of exactly $n round trips, then quit.
printf 'gq' | "$bench" --role client "endpoint=$ep" "clients=$clients" \
  "body=$body" warmup=100 "count=$n" warm_ms=120000 timeout_ms=120000 >&2
kill -TERM "$wpid" "$bpid"; wait "$wpid" || true; wait "$bpid" || true
callgrind_annotate --inclusive=no "$out" 2>/dev/null | head -60
echo "callgrind output: $out" >&2
