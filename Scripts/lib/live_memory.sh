#!/usr/bin/env bash
# Peak RSS of a capturing daemon within its --memory-mb budget plus its fixed size while hostile shapes
# (Scripts/lib/hostile_shapes.py) are replayed into a veth with tcpreplay. The fixed size is the same
# daemon's peak replaying Samples/agent-demo.pcap at that budget (it includes the kernel capture buffer,
# --buffer-size, 32 MB by default). Needs root (a network namespace and a veth pair).
# Usage: Scripts/lib/live_memory.sh BIN [SCALE] [BUDGETS]     (Scripts/stress runs it)
set -uo pipefail
bin=$1 scale=${2:-0.3} budgets=${3:-"64 256"}
cd "$(dirname "$0")/../.."
ns=ct-livemem
work=$(mktemp -d)
cleanup() {
  [ -n "${cap:-}" ] && kill -TERM "$cap" 2>/dev/null && wait "$cap" 2>/dev/null
  ip netns del $ns 2>/dev/null; ip link del ct-lmem0 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT
for shape in ooo-hole h2-frames tls-partial llm-bodies; do
  python3 Scripts/lib/hostile_shapes.py "$work/$shape.pcap" --shape $shape --scale "$scale" > /dev/null
done
# Peak RSS (MB) of `calltap capture` in the namespace while FILE is replayed into it at BUDGET.
run() { # budget file
  ip netns del $ns 2>/dev/null; ip link del ct-lmem0 2>/dev/null
  ip netns add $ns && ip link add ct-lmem0 type veth peer name ct-lmem1 && ip link set ct-lmem1 netns $ns \
    && ip link set ct-lmem0 up && ip -n $ns link set ct-lmem1 up || return 1
  ethtool -K ct-lmem0 tso off gso off gro off > /dev/null 2>&1
  "$bin" capture --netns $ns -i ct-lmem1 --memory-mb "$1" --format none > /dev/null 2> "$work/err" &
  cap=$!
  for _ in $(seq 50); do grep -q "capturing on" "$work/err" && break; sleep 0.1; done
  tcpreplay -q -i ct-lmem0 --mbps 800 "$2" > /dev/null 2>&1
  sleep 2
  awk '/VmHWM/ {print int($2 / 1024)}' /proc/$cap/status
  kill -TERM $cap; wait $cap 2>/dev/null; cap=
}
status=0
printf '%-14s %7s %8s %9s  %s\n' shape budget "peak MB" "limit MB" result
for budget in $budgets; do
  fixed=$(run "$budget" Samples/agent-demo.pcap) || { echo "live memory: cannot make the veth pair" >&2; exit 1; }
  for shape in ooo-hole h2-frames tls-partial llm-bodies; do
    peak=$(run "$budget" "$work/$shape.pcap")
    limit=$((budget + fixed))
    if [ -n "$peak" ] && [ "$peak" -le "$limit" ]; then result=ok; else result=FAILED; status=1; fi
    printf '%-14s %7s %8s %9s  %s\n' "$shape x$scale" "$budget" "${peak:-?}" "$limit" "$result"
  done
done
exit $status
