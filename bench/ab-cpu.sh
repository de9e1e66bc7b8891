#!/usr/bin/env bash
# bench ab-cpu: CPU per delivery of two chorus builds (A and B) on the chat
# workload of bench/artillery.sh (bench/scenarios/chat200.yml), run AT THE
# SAME TIME so that they share the machine's load: each against a gateway of
# its own (both strict, on core 0), both tools on core 1. On a shared machine
# the CPU one run costs moves by 1.5x with the load; two runs side by side
# see the same load, so their ratio is what the change did.
#   A=/tmp/chorus-before B=target/release/chorus bench/ab-cpu.sh
#   AB_ROUNDS=3 (default); each round ~62 s. Writes bench/out/ab-cpu.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${A:?A=<chorus binary> is needed}"
: "${B:?B=<chorus binary> is needed}"
GATEWAY=${GATEWAY:-target/release/chorus-gateway}
OUT=${BENCH_OUT:-bench/out}
ROUNDS=${AB_ROUNDS:-3}
PORT_A=${AB_PORT_A:-3311}
PORT_B=${AB_PORT_B:-3312}
export JWT_SECRET=${JWT_SECRET:-chorus-bench-secret-0123456789abcdef}
mkdir -p "$OUT"
[[ -x /usr/bin/time ]] || { echo "GNU time is needed (Debian package: time)" >&2; exit 1; }

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

for port in "$PORT_A" "$PORT_B"; do
    taskset -c 0 "$GATEWAY" --profile strict --addr "127.0.0.1:$port" \
        --queue-size 65536 --rate-per-sec 1000000 --rate-burst 1000000 \
        --max-connections 100000 --log-level warn &
    PIDS+=($!)
done
for port in "$PORT_A" "$PORT_B"; do
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "gateway on $port did not start" >&2; exit 1; }
done
deliveries() {
    curl -sf "http://127.0.0.1:$1/metrics" | awk '$1 == "chorus_gateway_deliveries_total" {print $2}'
}

echo "== A/B, side by side: A=$A B=$B =="
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$OUT/ab-cpu.jsonl"
printf '%-5s %-4s %5s %7s %6s %6s %11s %8s\n' round side load "cpu s" user sys deliveries "us/dlv"
for round in $(seq "$ROUNDS"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    da0=$(deliveries "$PORT_A")
    db0=$(deliveries "$PORT_B")
    runs=()
    for side in A B; do
        bin=$A port=$PORT_A
        [[ $side == B ]] && bin=$B port=$PORT_B
        rm -rf "$OUT/ab-run-$side"
        /usr/bin/time -f "%U %S" -o "$OUT/ab-$side.time" taskset -c 1 "$bin" run bench/scenarios/chat200.yml \
            --target "http://127.0.0.1:$port" --out "$OUT/ab-run-$side" --quiet --no-report \
            >"$OUT/ab-$side.log" 2>&1 &
        runs+=($!)
    done
    wait "${runs[@]}" || echo "warning: a run exited non-zero (see $OUT/ab-*.log)" >&2
    da=$(($(deliveries "$PORT_A") - da0))
    db=$(($(deliveries "$PORT_B") - db0))
    for side in A B; do
        d=$da
        [[ $side == B ]] && d=$db
        read -r user sys <"$OUT/ab-$side.time"
        line=$(jq -cn --arg side "$side" --argjson round "$round" --argjson load "$load" --argjson user "$user" \
            --argjson sys "$sys" --argjson d "$d" \
            --arg verdict "$(jq -r .verdict "$OUT/ab-run-$side/summary.json")" \
            '{side: $side, round: $round, load1: $load, cpu_user_s: $user, cpu_system_s: $sys, cpu_s: ($user + $sys),
              gateway_deliveries: $d, verdict: $verdict,
              cpu_us_per_delivery: (if $d > 0 then ($user + $sys) * 1e6 / $d else null end)}')
        echo "$line" >>"$OUT/ab-cpu.jsonl"
        echo "$line" | jq -r '[.round, .side, .load1, (.cpu_s * 100 | round / 100), .cpu_user_s, .cpu_system_s,
                .gateway_deliveries, ((.cpu_us_per_delivery // 0) * 100 | round / 100), .verdict] | @tsv' |
            awk -F'\t' '{printf "%-5s %-4s %5s %7s %6s %6s %11s %8s %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}'
    done
done
jq -rs '(map(select(.side == "A") | .cpu_s) | add) as $a | (map(select(.side == "B") | .cpu_s) | add) as $b |
    "B / A CPU over all rounds: \(if $a > 0 then ($b / $a * 1000 | round / 1000) else "n/a" end)"' "$OUT/ab-cpu.jsonl"
echo "wrote $OUT/ab-cpu.jsonl"
