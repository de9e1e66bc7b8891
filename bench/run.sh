#!/usr/bin/env bash
# chorus benchmarks on loopback. Usage:
#   bench/run.sh [idle|memory|fanout|fast|all]   (default: all)
# Environment knobs (defaults in brackets):
#   IDLE_CAP [30000]  MEMORY_CLIENTS [5000]  FANOUT_LISTENERS [500]
#   FANOUT_RATE [2000/s]  FAST_CLIENTS [500]  FAST_MESSAGES [60000]
#   BENCH_OUT [bench/out]  NO_BUILD (set to skip the release build)
#   QUIET_WAIT_S [180]: how long to wait for an idle machine before each run
# The gateway (or the synthetic sender) is pinned to core 0, chorus to core 1.
# Every step is bounded in time and stops by itself; see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release
OUT=${BENCH_OUT:-bench/out}
PORT=3000
FAST_PORT=3100
export JWT_SECRET=${JWT_SECRET:-chorus-bench-secret-0123456789abcdef}
mkdir -p "$OUT"

source bench/lib.sh

# Waits (at most QUIET_WAIT_S, default 180 s) until the machine is nearly
# idle: less than 15% of one core busy over 2 s.
wait_quiet() {
    local deadline=$((SECONDS + ${QUIET_WAIT_S:-180})) m0 m1 busy
    while ((SECONDS < deadline)); do
        m0=$(machine_busy_seconds)
        sleep 2
        m1=$(machine_busy_seconds)
        busy=$(echo "($m1 - $m0) * 50" | bc)
        if (($(echo "$busy < 15" | bc))); then
            return 0
        fi
    done
    echo "warning: the machine stayed busy (${busy}% of one core); measuring anyway" >&2
}

machine() {
    wait_quiet
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    free -g | sed -n 2p | awk '{print "memory: " $2 " GiB total"}'
    echo "nofile: soft $(ulimit -Sn), hard $(ulimit -Hn)"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Busy CPU seconds of the whole machine (every core), from /proc/stat.
machine_busy_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / {print ($2 + $3 + $4 + $7 + $8 + $9) / hz}' /proc/stat
}

# Softirq CPU seconds of the whole machine, from /proc/stat.
machine_softirq_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / {print $8 / hz}' /proc/stat
}

# Samples the CPU use of chorus ($1) and the server ($2) over $3 seconds, and
# of everything else on the machine (other processes and kernel softirq work).
cpu_window() {
    local c0 s0 m0 q0 c1 s1 m1 q1
    c0=$(cpu_seconds "$1") s0=$(cpu_seconds "$2") m0=$(machine_busy_seconds) q0=$(machine_softirq_seconds)
    sleep "$3"
    c1=$(cpu_seconds "$1") s1=$(cpu_seconds "$2") m1=$(machine_busy_seconds) q1=$(machine_softirq_seconds)
    echo "cpu over $3 s (100% = one core): chorus $(echo "scale=1; ($c1 - $c0) * 100 / $3" | bc)%," \
        "server $(echo "scale=1; ($s1 - $s0) * 100 / $3" | bc)%," \
        "everything else $(echo "scale=1; (($m1 - $m0) - ($c1 - $c0) - ($s1 - $s0)) * 100 / $3" | bc)%" \
        "(kernel softirq, partly charged to the two processes: $(echo "scale=1; ($q1 - $q0) * 100 / $3" | bc)%)"
}

rss_mib() {
    awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"
}

# The gateway for these runs: pings that never end a session, no rate limit.
start_run_gateway() {
    start_gateway "$PORT" --ping-interval-ms 300000 --ping-timeout-ms 300000 "${NO_RATE_LIMIT[@]}"
}

# chorus run, pinned to core 1, with a fresh run directory.
chorus_run() {
    local dir=$1
    shift
    rm -rf "$dir"
    taskset -c 1 "$BIN/chorus" run "$@" --out "$dir" --quiet --no-report || true
}

# Per-second deliveries from a run directory's time series: the median and
# best of the seconds that carried traffic (first and last cut).
delivery_rate() {
    jq -r '
      [ .points[] | .rates["deliveries.received.newMessage"] // 0 | select(. > 0) ] as $v
      | if ($v | length) == 0 then "no deliveries.received.newMessage in the time series" else
        ($v | if length > 2 then .[1:-1] else . end | sort) as $mid
        | "seconds with traffic: \($v | length); median \($mid[($mid | length) / 2 | floor] | floor)/s; best \($mid | max | floor)/s"
        end' "$1/timeseries.json"
    jq -r '"deliveries.received.newMessage total \(.counters["deliveries.received.newMessage"]); driver: bottleneck \(.driver.bottleneck), cpu max \(.driver.cpu_percent_max)%, runtime lag p99 \(.driver.runtime_lag_p99_us) us; \(.driver.notes | join("; "))"' "$1/summary.json"
}

# The highest driver.rss_bytes sample of a run directory, in bytes.
max_rss() {
    jq '[ .points[] | .gauges["driver.rss_bytes"] // 0 ] | max' "$1/timeseries.json"
}

bench_idle() {
    echo "== idle clients (cap ${IDLE_CAP:-30000}) =="
    machine
    start_run_gateway
    local start_cpu
    start_cpu=$(cpu_seconds "$SERVER_PID")
    taskset -c 1 "$BIN/examples/bench_idle_clients" --target "http://127.0.0.1:$PORT" \
        --cap "${IDLE_CAP:-30000}" --hold-s 10
    echo "gateway: rss $(rss_mib "$SERVER_PID") MiB, cpu $(echo "$(cpu_seconds "$SERVER_PID") - $start_cpu" | bc) s"
    bench_cleanup
}

bench_memory() {
    local n=${MEMORY_CLIENTS:-5000}
    echo "== run-engine memory per idle listener ($n vs 10 listeners) =="
    machine
    start_run_gateway
    for clients in 10 "$n"; do
        chorus_run "$OUT/memory-$clients" bench/scenarios/listen.yml \
            --target "http://127.0.0.1:$PORT" --set "load.phases.0.ramp.to=$clients" \
            --set load.phases.0.ramp.over=30s --set load.phases.1.hold=20s \
            --set groups.0.flow.1.listen=45s
        echo "listeners $clients: connections.ok $(jq '.counters["connections.ok"]' "$OUT/memory-$clients/summary.json"), driver.rss_bytes max $(max_rss "$OUT/memory-$clients")"
    done
    bench_cleanup
}

bench_fanout() {
    local listeners=${FANOUT_LISTENERS:-500} rate=${FANOUT_RATE:-2000/s}
    echo "== fanout via the gateway: $listeners listeners + 4 writers, $rate =="
    machine
    start_run_gateway
    rm -rf "$OUT/fanout"
    taskset -c 1 "$BIN/chorus" run bench/scenarios/fanout.yml --target "http://127.0.0.1:$PORT" \
        --set "load.phases.0.ramp.to=$((listeners + 4))" --set "load.messages.rate=$rate" \
        --out "$OUT/fanout" --quiet --no-report &
    local chorus_pid=$!
    # CPU over the sending window (seconds 12 to 32 of the run).
    sleep 12
    cpu_window "$chorus_pid" "$SERVER_PID" 20
    wait "$chorus_pid" || true
    delivery_rate "$OUT/fanout"
    bench_cleanup
}

bench_fast() {
    local clients=${FAST_CLIENTS:-500} messages=${FAST_MESSAGES:-60000}
    echo "== chorus alone against the synthetic sender: $clients listeners x $messages messages =="
    machine
    taskset -c 0 "$BIN/examples/bench_fast_sender" --addr "127.0.0.1:$FAST_PORT" \
        --clients "$clients" --messages "$messages" --max-s 150 &
    SERVER_PID=$!
    sleep 1
    rm -rf "$OUT/fast"
    taskset -c 1 "$BIN/chorus" run bench/scenarios/listen.yml --target "http://127.0.0.1:$FAST_PORT" \
        --set "load.phases.0.ramp.to=$clients" --set groups.0.flow.1.listen=60s \
        --set load.phases.1.hold=60s --out "$OUT/fast" --quiet --no-report &
    local chorus_pid=$!
    # CPU over the receiving window (seconds 10 to 30 of the run).
    sleep 10
    cpu_window "$chorus_pid" "$SERVER_PID" 20
    wait "$chorus_pid" || true
    delivery_rate "$OUT/fast"
    bench_cleanup
}

case ${1:-all} in
    idle | memory | fanout | fast | all) ;;
    *)
        echo "usage: $0 [idle|memory|fanout|fast|all]" >&2
        exit 2
        ;;
esac
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -p chorus -p chorus-gateway --bins --examples
case ${1:-all} in
    idle) bench_idle ;;
    memory) bench_memory ;;
    fanout) bench_fanout ;;
    fast) bench_fast ;;
    all)
        bench_idle
        bench_memory
        bench_fanout
        bench_fast
        ;;
esac
