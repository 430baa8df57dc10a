#!/bin/bash
# The kernel's share of a relayed packet: CPU time per packet of `rtp-load reflect`,
# a blocking loop that does nothing but recv_from and send_to (one datagram in,
# the same datagram back out), under the same load as worker_cpu_per_packet.sh.
# Usage: perf/scripts/reflector_cpu_per_packet.sh STREAMS   (STREAMS x 50 pkt/s)
# The reflector is pinned to core 1 and the generator (sleeping between sends) to
# core 0; the reflector thread's run time (schedstat, ns) over a 6 s window is
# divided by the packets offered in it. Needs a release build of rtp-load.
set -euo pipefail
STREAMS=$1
cd "$(dirname "$0")/../.."
OUT=$(mktemp -d)
./target/release/rtp-load reflect --listen 127.0.0.1:0 --duration 14 --core 1 > "$OUT/reflect" 2>&1 &
RPID=$!
ADDR=""
for _ in $(seq 50); do
  sleep 0.1
  ADDR=$(awk '/^reflecting on/ {print $3}' "$OUT/reflect")
  [ -n "$ADDR" ] && break
done
[ -n "$ADDR" ] || { echo "reflector did not start"; kill "$RPID"; exit 1; }
TID=""
for t in /proc/$RPID/task/*; do
  case "$(cat "$t/comm" 2>/dev/null)" in rtp-load-reflec*) TID=$(basename "$t") ;; esac
done
[ -n "$TID" ] || { echo "no reflector thread found"; kill "$RPID"; exit 1; }
./target/release/rtp-load --target "$ADDR" --streams "$STREAMS" --duration 10 --srtp none \
  --poll sleep --load-core 0 --quiet --out "$OUT/load" > "$OUT/log" 2>&1 &
LPID=$!
sleep 2
A=$(awk '{print $1}' "/proc/$RPID/task/$TID/schedstat")
sleep 6
B=$(awk '{print $1}' "/proc/$RPID/task/$TID/schedstat")
wait "$LPID"
kill "$RPID" 2>/dev/null || true
wait "$RPID" 2>/dev/null || true
RATE=$((STREAMS * 50))
echo "reflector rate=$RATE ns_per_packet=$(( (B - A) / (RATE * 6) )) $(grep '^total' "$OUT/log" | awk '{print "lost=" $5 " p99_us=" $12 " p999_us=" $13}')"
rm -rf "$OUT"
