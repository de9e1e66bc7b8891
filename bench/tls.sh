#!/usr/bin/env bash
# What TLS costs the driver, on loopback: connects per second with full
# handshakes and with resumed sessions, and resident memory per idle client
# over TLS versus plaintext. Usage:
#   bench/tls.sh
# Environment knobs (defaults in brackets):
#   TLS_CONNECTS [2000]  TLS_CONCURRENCY [4]  TLS_IDLE [2000]
#   NO_BUILD (set to skip the release build)
# Two reference gateways (one TLS, one plaintext, same settings) run pinned to
# core 0, the benchmark client to core 1. The certificate is a throwaway
# self-signed one made here with openssl. Every step is bounded and stops by
# itself; see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release
TLS_PORT=3443
PLAIN_PORT=3080
export JWT_SECRET=${JWT_SECRET:-chorus-bench-secret-0123456789abcdef}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v openssl >/dev/null || { echo "bench/tls.sh needs openssl" >&2; exit 2; }
if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p chorus-gateway --bin chorus-gateway
    cargo build --release --example bench_tls
fi

# An end-entity certificate (CA:FALSE) for localhost and 127.0.0.1; the
# client trusts it directly.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null

start_gateway() {
    taskset -c 0 "$BIN/chorus-gateway" --profile strict --log-level warn \
        --rate-per-sec 1000000 --rate-burst 1000000 --max-connections 100000 "$@" &
    PIDS+=($!)
}
start_gateway --addr "127.0.0.1:$TLS_PORT" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
start_gateway --addr "127.0.0.1:$PLAIN_PORT"
for port in $TLS_PORT $PLAIN_PORT; do
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.1
    done
done

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in rate memory-tls memory-plain; do
    timeout 300 taskset -c 1 "$BIN/examples/bench_tls" --mode "$mode" \
        --tls-target "https://127.0.0.1:$TLS_PORT" --plain-target "http://127.0.0.1:$PLAIN_PORT" \
        --ca "$WORK/cert.pem" --connects "${TLS_CONNECTS:-2000}" \
        --concurrency "${TLS_CONCURRENCY:-4}" --idle "${TLS_IDLE:-2000}"
done
