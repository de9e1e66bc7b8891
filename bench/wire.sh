#!/usr/bin/env bash
# chorus's delivery latency against the wire. Usage:
#   bench/wire.sh                 # the chorus of this tree (target/release/chorus)
#   CHORUS_BEFORE=/path/to/an/older/chorus bench/wire.sh   # that one too, first
# Plays scenarios/smoke.yml as a user runs it (nothing pinned: gateway and
# chorus share the cores) against a reference gateway on 127.0.0.1:$WIRE_PORT
# [3300], captures the loopback traffic with tcpdump (root), and times every
# newMessage delivery from the capture (bench/wire_latency.py): chorus's
# delivery.newMessage and the wire's, both from the intended send time in the
# message's correlation mark, side by side. About 40 s per chorus binary.
# Knobs: WIRE_PORT [3300]  BENCH_OUT [bench/out]  NO_BUILD (skip the release build)
#        CHORUS [target/release/chorus]  GATEWAY [target/release/chorus-gateway]
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${BENCH_OUT:-bench/out}
PORT=${WIRE_PORT:-3300}
CHORUS=${CHORUS:-target/release/chorus}
GATEWAY=${GATEWAY:-target/release/chorus-gateway}
export JWT_SECRET=${JWT_SECRET:-chorus-bench-secret-0123456789abcdef}
mkdir -p "$OUT"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT

if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p chorus --bin chorus -p chorus-gateway --bin chorus-gateway
fi
command -v tcpdump >/dev/null || { echo "tcpdump is needed" >&2; exit 2; }

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kernel: $(uname -r)"

# One measured run of the chorus binary $2, labelled $1.
measure() {
    local label=$1 bin=$2 dir="$OUT/wire-$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    "$GATEWAY" --profile strict --addr "127.0.0.1:$PORT" >"$dir/gateway.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
        sleep 0.1
    done
    tcpdump -i lo -nn -s 0 -B 32768 --time-stamp-precision=nano -w "$dir/capture.pcap" \
        "tcp port $PORT" 2>"$dir/tcpdump.log" &
    local dump=$!
    PIDS+=($dump)
    for _ in $(seq 100); do
        if grep -q "listening on" "$dir/tcpdump.log"; then break; fi
        sleep 0.1
    done
    "$bin" run scenarios/smoke.yml --target "http://127.0.0.1:$PORT" --out "$dir/run" \
        --quiet --no-report || echo "($label: chorus exited with $?)"
    sleep 0.5
    kill -INT "$dump"
    wait "$dump" 2>/dev/null || true
    cleanup
    echo
    echo "== $label: $bin"
    grep -E "packets (captured|dropped by kernel)" "$dir/tcpdump.log" | tr '\n' ' '
    echo
    python3 bench/wire_latency.py "$dir/capture.pcap" "$PORT" "$dir/run/summary.json" "$OUT/wire-$label.json"
}

if [[ -n "${CHORUS_BEFORE:-}" ]]; then
    measure before "$CHORUS_BEFORE"
fi
measure after "$CHORUS"
echo
echo "JSON: $OUT/wire-*.json; captures and run directories: $OUT/wire-*/"
