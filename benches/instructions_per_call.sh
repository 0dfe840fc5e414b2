#!/usr/bin/env bash
# Instructions per call (user space, counted by valgrind's callgrind) of one call through the
# gateway and of the reference it is compared with, at 1 call in flight on one worker thread.
# Unlike calls/s on a shared virtual machine, these counts barely move between runs, so they
# show what a change to the request path costs or saves.
#
# Each figure is the difference between a 1 s and a 4 s run (3 rounds each) divided by the
# difference in calls, which removes start-up. Kernel time is not counted.
#
# Usage: benches/instructions_per_call.sh [cached|uncached ...]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
bench=$(cargo bench --bench gateway --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$bench" ] || { echo "bench binary not found" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run PART SIDE ROUND_MS -> "calls instructions"
run() {
  local log="$out/$1-$2-$3"
  ACK_BENCH_ONLY=$1 ACK_BENCH_SIDE=$2 ACK_BENCH_IN_FLIGHT=1 ACK_BENCH_ROUND_MS=$3 \
    TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$log.cg" \
    "$bench" --bench >"$log.out" 2>&1
  local calls instructions
  calls=$(sed -n "s/^calls at 1 in flight: reference \([0-9]*\), gateway \([0-9]*\)$/\1 \2/p" "$log.out" |
    awk -v side="$2" '{ print (side == "gateway") ? $2 : $1 }')
  instructions=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log.out")
  echo "$calls $instructions"
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(cached uncached)
echo "| part | side | instructions per call |"
echo "|---|---|---|"
for part in "${parts[@]}"; do
  for side in reference gateway; do
    read -r c1 i1 <<<"$(run "$part" "$side" 1000)"
    read -r c2 i2 <<<"$(run "$part" "$side" 4000)"
    echo "| $part | $side | $(( (i2 - i1) / (c2 - c1) )) |"
  done
done
