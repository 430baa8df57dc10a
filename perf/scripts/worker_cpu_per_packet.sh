#!/bin/bash
# Worker CPU time per relayed packet through rtp-load's embedded gateway.
# Usage: perf/scripts/worker_cpu_per_packet.sh IDLE STREAMS [BACKEND]
#   IDLE: busy | block | spin:MICROS | coalesce:BATCH:MICROS; STREAMS x 50 pkt/s.
# The worker is pinned to core 1 and the generator (sleeping between sends) to
# core 0; the worker thread's run time (schedstat, ns) over a 6 s window is
# divided by the packets offered in it. Needs a release build of rtp-load.
set -euo pipefail
IDLE=$1; STREAMS=$2; BACKEND=${3:-io_uring}
cd "$(dirname "$0")/../.."
OUT=$(mktemp -d)
./target/release/rtp-load --streams "$STREAMS" --duration 10 --srtp none --idle "$IDLE" \
  --backend "$BACKEND" --poll sleep --cores 1 --load-core 0 --quiet --out "$OUT" > "$OUT/log" 2>&1 &
PID=$!
TID=""
for _ in $(seq 100); do
  sleep 0.1
  for t in /proc/$PID/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = "rtp-worker-0" ] && TID=$(basename "$t")
  done
  [ -n "$TID" ] && break
done
[ -n "$TID" ] || { echo "no worker thread found"; kill "$PID"; exit 1; }
sleep 2
A=$(awk '{print $1}' "/proc/$PID/task/$TID/schedstat")
sleep 6
B=$(awk '{print $1}' "/proc/$PID/task/$TID/schedstat")
wait "$PID"
RATE=$((STREAMS * 50))
echo "idle=$IDLE backend=$BACKEND rate=$RATE worker_ns_per_packet=$(( (B - A) / (RATE * 6) )) $(grep '^total' "$OUT/log" | awk '{print "lost=" $5 " p99_us=" $12 " p999_us=" $13}')"
rm -rf "$OUT"
