#!/usr/bin/env bash
# bench floor: CPU per delivery of chorus against the floor of any client on
# this kernel, on the ordinary-rate chat workload of bench/artillery.sh
# (bench/scenarios/chat200.yml: 200 users, 20 messages each 2 s apart,
# everyone receives everything, ~16,000 deliveries/s).
#   bench/floor.sh                 # builds, then 3 rounds of every tool
#   NO_BUILD=1 FLOOR_REPEAT=1 bench/floor.sh
#   CHORUS_BEFORE=/tmp/chorus-main NO_BUILD=1 bench/floor.sh   # adds an older chorus
# The tools, played one after the other in each round against one gateway:
#   chorus     `chorus run bench/scenarios/chat200.yml` (all its checks)
#   before     the same with $CHORUS_BEFORE (only when it is set)
#   floor      bench/peers/floor (examples/bench_floor_client): the same
#              users, joins and sends, but it only reads and counts frames
#              (plain recv, current-thread tokio)
#   floor-ts   the same with kernel receive timestamps on (SO_TIMESTAMPING +
#              recvmsg), as chorus reads
#   floor-mt   floor-ts on tokio's multi-thread scheduler (as chorus runs)
#   floor-da   floor with TCP_QUICKACK turned off after every read (delayed
#              ACKs): not what clients do, only to show what the ACK each
#              read sends costs (not in the default set)
# FLOOR_TOOLS picks some ("floor floor-ts"). The gateway (strict, rate limit
# raised) runs on core 0, the tool on core 1, 127.0.0.1 only. CPU = user +
# system of the tool's process (GNU time); deliveries = the gateway's
# chorus_gateway_deliveries_total over the tool's run (the same witness for
# every tool). Each line prints the load average at its start: compare the
# tools within one round. Writes bench/out/floor.jsonl (one object per run).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CHORUS_BIN_DIR:-target/release}
EXAMPLES=${CHORUS_EXAMPLES_DIR:-target/release/examples}
OUT=${BENCH_OUT:-bench/out}
PORT=${FLOOR_PORT:-3310}
REPEAT=${FLOOR_REPEAT:-3}
TOOLS=${FLOOR_TOOLS:-chorus ${CHORUS_BEFORE:+before} floor floor-ts floor-mt}
export JWT_SECRET=${JWT_SECRET:-chorus-bench-secret-0123456789abcdef}
mkdir -p "$OUT"

source bench/lib.sh

[[ -x /usr/bin/time ]] || { echo "GNU time is needed (Debian package: time)" >&2; exit 1; }
if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p chorus -p chorus-gateway --bins
    cargo build --release -p chorus --example bench_floor_client
fi

echo "== CPU per delivery: chorus against the floor, 200 users x 20 messages, everyone receives everything =="
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  kernel: $(uname -r)"
echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"

start_gateway "$PORT" "${NO_RATE_LIMIT[@]}"

gateway_deliveries() {
    curl -sf "http://127.0.0.1:$PORT/metrics" | awk '$1 == "chorus_gateway_deliveries_total" {print $2}'
}

# received TOOL: what the tool itself says it received (newMessage frames).
received() {
    case $1 in
        chorus | before) jq '.counters["deliveries.received.newMessage"]' "$OUT/floor-run/summary.json" ;;
        *) tail -n1 "$OUT/floor-$1.log" | jq '.new_message' ;;
    esac
}

# measure ROUND TOOL: one run of TOOL on core 1 under GNU time; one JSON line.
measure() {
    local round=$1 tool=$2 load d0 d1 cmd
    case $tool in
        chorus | before)
            local bin="$BIN/chorus"
            [[ $tool == before ]] && bin=$CHORUS_BEFORE
            rm -rf "$OUT/floor-run"
            cmd=("$bin" run bench/scenarios/chat200.yml --target "http://127.0.0.1:$PORT"
                --out "$OUT/floor-run" --quiet --no-report)
            ;;
        floor) cmd=("$EXAMPLES/bench_floor_client" --addr "127.0.0.1:$PORT") ;;
        floor-ts) cmd=("$EXAMPLES/bench_floor_client" --addr "127.0.0.1:$PORT" --timestamps) ;;
        floor-mt) cmd=("$EXAMPLES/bench_floor_client" --addr "127.0.0.1:$PORT" --timestamps --multi-thread) ;;
        floor-da) cmd=("$EXAMPLES/bench_floor_client" --addr "127.0.0.1:$PORT" --delayed-acks) ;;
        *) echo "unknown tool $tool" >&2; return 1 ;;
    esac
    # Let the previous run's sockets close and the machine settle.
    sleep 2
    load=$(cut -d' ' -f1 /proc/loadavg)
    d0=$(gateway_deliveries)
    /usr/bin/time -f "%U %S %M %e" -o "$OUT/floor-$tool.time" taskset -c 1 "${cmd[@]}" \
        >"$OUT/floor-$tool.log" 2>&1 || echo "warning: $tool exited non-zero (see $OUT/floor-$tool.log)" >&2
    d1=$(gateway_deliveries)
    read -r user sys maxrss_kib wall <"$OUT/floor-$tool.time"
    jq -cn --arg tool "$tool" --argjson round "$round" --argjson load "$load" --argjson user "$user" \
        --argjson sys "$sys" --argjson rss "$maxrss_kib" --argjson wall "$wall" \
        --argjson deliveries "$((d1 - d0))" --argjson received "$(received "$tool")" \
        '{tool: $tool, round: $round, load1: $load, cpu_user_s: $user, cpu_system_s: $sys, cpu_s: ($user + $sys),
          max_rss_mib: ($rss / 1024), wall_s: $wall, gateway_deliveries: $deliveries, received_newMessage: $received,
          cpu_us_per_delivery: (if $deliveries > 0 then ($user + $sys) * 1e6 / $deliveries else null end),
          user_us_per_delivery: (if $deliveries > 0 then $user * 1e6 / $deliveries else null end),
          system_us_per_delivery: (if $deliveries > 0 then $sys * 1e6 / $deliveries else null end)}'
}

: >"$OUT/floor.jsonl"
printf '\n%-5s %-8s %5s %7s %6s %6s %11s %11s %8s %8s %8s\n' round tool load "cpu s" user sys deliveries received "us/dlv" "user us" "sys us"
for round in $(seq "$REPEAT"); do
    for tool in $TOOLS; do
        line=$(measure "$round" "$tool")
        echo "$line" >>"$OUT/floor.jsonl"
        echo "$line" | jq -r '[.round, .tool, .load1, (.cpu_s * 100 | round / 100), .cpu_user_s, .cpu_system_s, .gateway_deliveries,
                .received_newMessage, ((.cpu_us_per_delivery // 0) * 100 | round / 100),
                ((.user_us_per_delivery // 0) * 100 | round / 100), ((.system_us_per_delivery // 0) * 100 | round / 100)] | @tsv' |
            awk -F'\t' '{printf "%-5s %-8s %5s %7s %6s %6s %11s %11s %8s %8s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11}'
    done
done
echo
echo "median us/delivery per tool:"
jq -rs 'group_by(.tool)[] | (map(.cpu_us_per_delivery) | sort) as $v |
    "\(.[0].tool): \($v[($v | length) / 2 | floor] * 100 | round / 100) (of \($v | map(. * 100 | round / 100)))"' "$OUT/floor.jsonl"
echo "wrote $OUT/floor.jsonl"
