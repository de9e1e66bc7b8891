#!/usr/bin/env bash
# The gateway against its peers, on loopback: the same fan-out load
# (`chorus run bench/scenarios/fanout.yml`: 4 writers share one message
# schedule, every message goes to every socket in /chat) against
#   gateway  the reference gateway, --profile strict
#   bare     bench/peers/bare: a bare tokio-tungstenite fan-out server
#   node     bench/peers/node: socket.io 4 with the tutorial's logic
# at N receivers each, the server pinned to core 0 and chorus to core 1.
# Usage:
#   bench/gateway.sh [fanout|sweep|max|memory|storm|all]   (default: fanout)
#   sweep: each server at N = GW_SWEEP_N [1000] under every offered load of
#   GW_SWEEP ["100000 200000 400000 800000"] deliveries/s, then
#   $BENCH_OUT/gateway-rate-p99.svg: delivery rate against p99, one line per server
#   max: per server (GW_SERVERS ["gateway node"]) and N, the highest offered rate
#   with p99 < GW_MAX_P99_MS [50] ms, 0 lost and all connected (the issue's
#   criterion), found by doubling then bisecting (GW_MAX_FROM, GW_MAX_TO,
#   GW_MAX_MIN, GW_MAX_STEPS: see bench_max); then gateway / peer per N
# Knobs (defaults in brackets):
#   GW_SERVERS ["gateway bare node"]  GW_N ["100 1000 5000"]
#   GW_OFFERED [400000]: deliveries/s offered (message rate = this / (N + 4))
#   GW_SEND_S [15]: seconds of sending per run
#   GW_PERF: set to record `perf record -g` of the gateway at N=1000 (bench/out/gateway-perf.data)
#   GW_IDLE [10000]: joined idle clients of `memory` (GW_IDLE_RATE [250] joins/s); GW_STORM [10000] at
#   GW_STORM_RATE [50]/s for `storm`; GW_MEMORY_SERVER [gateway] (or baseline) for both.
#   Memory figures are appended to $BENCH_OUT/gateway-memory.jsonl. GW_TRIM=1: also the RSS
#   after glibc's malloc_trim(0), called through gdb (what glibc keeps of freed memory).
#   GW_GATEWAY_BIN [target/release/chorus-gateway]: the gateway binary
#   GW_BASELINE_BIN: another gateway build, run as server `baseline` (add it to GW_SERVERS)
#   GW_QUIET_WAIT_S [90]: how long to wait for an idle machine before each run
#   GW_BIN_DIR [target/release]: where chorus (and the bare peer) are
#   BENCH_OUT [bench/out]  NO_BUILD (skip the release build)
#   GW_PORT [3400]: the server's port (another port when another run uses 3400)
# Every run is bounded in time (chorus's max_duration, the script's timeouts);
# the table goes to stdout and the figures to $BENCH_OUT/gateway.json.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${GW_BIN_DIR:-target/release}
OUT=${BENCH_OUT:-bench/out}
PORT=${GW_PORT:-3400}
export JWT_SECRET=${JWT_SECRET:-chorus-bench-secret-0123456789abcdef}
mkdir -p "$OUT"

SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap cleanup EXIT

cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

# Busy CPU seconds of the whole machine (every core), from /proc/stat.
machine_busy_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / {print ($2 + $3 + $4 + $7 + $8 + $9) / hz}' /proc/stat
}

rss_kib() {
    awk '/VmRSS/ {print $2}' "/proc/$1/status"
}

machine() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "nofile: soft $(ulimit -Sn), hard $(ulimit -Hn); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
}

wait_port() {
    for _ in $(seq 100); do
        if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "$1 did not start" >&2
    return 1
}

start_server() {
    # The previous server may still be draining its connections.
    for _ in $(seq 200); do
        (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || break
        sleep 0.1
    done
    case $1 in
        gateway | baseline)
            local bin=${GW_GATEWAY_BIN:-$BIN/chorus-gateway}
            [[ $1 == gateway ]] || bin=$GW_BASELINE_BIN
            taskset -c 0 "$bin" --profile strict --addr "127.0.0.1:$PORT" \
                --ping-interval-ms 300000 --ping-timeout-ms 300000 --queue-size 65536 \
                --rate-per-sec 1000000 --rate-burst 1000000 --max-connections 100000 \
                --log-level warn &
            ;;
        bare)
            taskset -c 0 "$BIN/examples/bench_bare_fanout" --addr "127.0.0.1:$PORT" >/dev/null &
            ;;
        node)
            PORT=$PORT taskset -c 0 node bench/peers/node/server.mjs >/dev/null &
            ;;
    esac
    SERVER_PID=$!
    wait_port "$1"
}

# Waits (at most GW_QUIET_WAIT_S, default 90 s) until the machine is nearly
# idle (under 30% of one core busy over 2 s): it is often shared.
wait_quiet() {
    local deadline=$((SECONDS + ${GW_QUIET_WAIT_S:-90})) m0 m1 busy=0
    while ((SECONDS < deadline)); do
        m0=$(machine_busy_seconds)
        sleep 2
        m1=$(machine_busy_seconds)
        busy=$(echo "($m1 - $m0) * 50" | bc)
        (($(echo "$busy < 30" | bc))) && return 0
    done
    echo "warning: the machine stayed busy (${busy}% of one core); measuring anyway" >&2
}

# One fan-out run: server $1, $2 receivers; appends a JSON line to $3.
fanout_run() {
    local server=$1 n=$2 results=$3
    local offered=${GW_OFFERED:-400000} send_s=${GW_SEND_S:-15}
    local rate=$(((offered + n + 3) / (n + 4)))
    local ramp=$((n / 500 > 4 ? n / 500 : 4))
    local think=$((ramp + 2))
    local listen=$((think + send_s + 6))
    local dir="$OUT/gateway-$server-$n"
    wait_quiet
    start_server "$server"
    rm -rf "$dir"
    taskset -c 1 "$BIN/chorus" run bench/scenarios/fanout.yml --target "http://127.0.0.1:$PORT" \
        --set "load.phases.0.ramp.to=$((n + 4))" --set "load.phases.0.ramp.over=${ramp}s" \
        --set "load.phases.1.hold=$((listen + 2))s" --set "load.messages.rate=$rate/s" \
        --set "groups.0.flow.3.think=${think}s" --set "groups.0.flow.4.loop.duration=${send_s}s" \
        --set "groups.1.flow.1.listen=${listen}s" \
        --out "$dir" --quiet --no-report >"$dir.log" 2>&1 &
    local chorus_pid=$!
    # CPU over the middle of the sending window.
    sleep $((think + 3))
    local window=$((send_s - 5)) c0 s0 c1 s1 perf_pid=""
    if [[ -n "${GW_PERF:-}" && $server == gateway && $n == 1000 ]]; then
        perf record -g -o "$OUT/gateway-perf.data" -p "$SERVER_PID" -- sleep "$window" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    local m0 m1
    c0=$(cpu_seconds "$chorus_pid") s0=$(cpu_seconds "$SERVER_PID") m0=$(machine_busy_seconds)
    sleep "$window"
    c1=$(cpu_seconds "$chorus_pid") s1=$(cpu_seconds "$SERVER_PID") m1=$(machine_busy_seconds)
    [[ -z "$perf_pid" ]] || wait "$perf_pid" || true
    wait "$chorus_pid" || true
    cleanup
    jq -c --arg server "$server" --argjson n "$n" --argjson rate "$rate" \
        --argjson cpu_chorus "$(echo "scale=1; ($c1 - $c0) * 100 / $window" | bc)" \
        --argjson cpu_server "$(echo "scale=1; ($s1 - $s0) * 100 / $window" | bc)" \
        --argjson cpu_other "$(echo "scale=1; (($m1 - $m0) - ($c1 - $c0) - ($s1 - $s0)) * 100 / $window" | bc)" \
        --slurpfile ts "$dir/timeseries.json" '
        ([ $ts[0].points[] | .rates["deliveries.received.newMessage"] // 0 | select(. > 0) ]
         | if length > 2 then .[1:-1] else . end | sort) as $v
        | {server: $server, n: $n, message_rate: $rate, offered_per_s: ($rate * ($n + 4)),
           deliveries_per_s_median: (if ($v | length) > 0 then $v[($v | length) / 2 | floor] | floor else 0 end),
           deliveries_per_s_best: (($v | max // 0) | floor),
           p50_ms: (.latency["delivery.newMessage"].p50_us / 1000),
           p99_ms: (.latency["delivery.newMessage"].p99_us / 1000),
           received: .counters["deliveries.received.newMessage"],
           lost: .counters["deliveries.lost"], connections_ok: .counters["connections.ok"],
           cpu_server_pct: $cpu_server, cpu_chorus_pct: $cpu_chorus, cpu_everything_else_pct: $cpu_other,
           bottleneck: .driver.bottleneck}
        | .server_cpu_us_per_delivery = (if .deliveries_per_s_median > 0
            then (.cpu_server_pct * 10000 / .deliveries_per_s_median * 100 | floor) / 100 else null end)' \
        "$dir/summary.json" | tee -a "$results"
}

bench_fanout() {
    local results="$OUT/gateway-fanout.jsonl"
    : >"$results"
    echo "== fan-out: servers ${GW_SERVERS:-gateway bare node}, N ${GW_N:-100 1000 5000}, ${GW_OFFERED:-400000} deliveries/s offered =="
    machine
    for n in ${GW_N:-100 1000 5000}; do
        for server in ${GW_SERVERS:-gateway bare node}; do
            fanout_run "$server" "$n" "$results"
        done
    done
    jq -s '{machine: {date: (now | todate), nproc: '"$(nproc)"'}, fanout: .}' "$results" >"$OUT/gateway.json"
    printf '\n%-8s %6s %10s %10s %9s %9s %8s %8s %8s %8s %8s\n' server N offered/s median/s p50_ms p99_ms lost cpu_srv cpu_gen cpu_else us/deliv
    jq -r '.fanout[] | [.server, .n, .offered_per_s, .deliveries_per_s_median, .p50_ms, .p99_ms, .lost, .cpu_server_pct, .cpu_chorus_pct, .cpu_everything_else_pct, .server_cpu_us_per_delivery] | @tsv' \
        "$OUT/gateway.json" | awk -F'\t' '{printf "%-8s %6s %10s %10s %9s %9s %8s %7s%% %7s%% %7s%% %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11}'
    jq -r '.fanout as $f | ($f | map(select(.server == "gateway")))[] as $g
        | ($f | map(select(.server != "gateway" and .n == $g.n)))[]
        | "N=\($g.n): gateway / \(.server) = \(if .deliveries_per_s_median > 0 then ($g.deliveries_per_s_median / .deliveries_per_s_median * 100 | floor) / 100 else "n/a" end)"' \
        "$OUT/gateway.json"
}

# Each server under rising offered loads at one N, drawn as rate against p99.
bench_sweep() {
    local results="$OUT/gateway-sweep.jsonl" n=${GW_SWEEP_N:-1000}
    : >"$results"
    echo "== sweep: servers ${GW_SERVERS:-gateway bare node}, N $n, offered ${GW_SWEEP:-100000 200000 400000 800000} deliveries/s =="
    machine
    for server in ${GW_SERVERS:-gateway bare node}; do
        for offered in ${GW_SWEEP:-100000 200000 400000 800000}; do
            GW_OFFERED=$offered fanout_run "$server" "$n" "$results"
        done
    done
    "$BIN/examples/bench_plot" "$results" "$OUT/gateway-rate-p99.svg"
}

# The issue's criterion, per server and N: the highest offered rate whose
# run has p99 of `delivery.newMessage` under GW_MAX_P99_MS [50] ms, nothing
# lost and every client connected. The offered rate doubles from
# GW_MAX_FROM [25000] deliveries/s while runs pass (up to GW_MAX_TO [800000]),
# halves down to GW_MAX_MIN [3125] when the first fails, then GW_MAX_STEPS [2]
# geometric bisections between the best pass and the lowest fail.
# Every probe goes to $OUT/gateway-max-probes.jsonl, the result per server
# and N to $OUT/gateway-max.jsonl; then the ratios of the gateway to each peer.
max_pass() {
    jq -e --argjson n "$1" --argjson p99 "${GW_MAX_P99_MS:-50}" \
        '.lost == 0 and .received > 0 and .p99_ms < $p99 and .connections_ok == ($n + 4)' >/dev/null <<<"$2"
}

max_search() {
    local server=$1 n=$2 probes=$3 results=$4
    local from=${GW_MAX_FROM:-25000} to=${GW_MAX_TO:-800000} min=${GW_MAX_MIN:-3125}
    local lo=0 hi=0 r=$from line best="" fail=""
    # Run in this shell (not in a command substitution), so that the EXIT
    # trap still knows the server it started.
    probe() {
        local one="$OUT/gateway-max-probe.json"
        : >"$one"
        GW_OFFERED=$1 fanout_run "$server" "$n" "$one" >/dev/null
        line=$(tail -n1 "$one")
        line=$(jq -c --argjson pass "$(max_pass "$n" "$line" && echo true || echo false)" '. + {pass: $pass}' <<<"$line")
        echo "$line" >>"$probes"
        echo "  $server N=$n offered $1: $(jq -r '"\(.deliveries_per_s_median)/s p99 \(.p99_ms) ms lost \(.lost) connected \(.connections_ok) generator bottleneck \(.bottleneck) -> \(if .pass then "pass" else "fail" end)"' <<<"$line")" >&2
        jq -e .pass >/dev/null <<<"$line"
    }
    while ((r <= to)); do
        if probe "$r"; then lo=$r best=$line r=$((r * 2)); else hi=$r fail=$line; break; fi
    done
    if ((lo == 0)); then
        r=$((hi / 2))
        while ((r >= min)); do
            if probe "$r"; then lo=$r best=$line; break; else hi=$r fail=$line r=$((r / 2)); fi
        done
    fi
    local step
    for ((step = 0; step < ${GW_MAX_STEPS:-2} && lo > 0 && hi > 0; step++)); do
        r=$(awk -v a="$lo" -v b="$hi" 'BEGIN {printf "%d", sqrt(a * b)}')
        if probe "$r"; then lo=$r best=$line; else hi=$r fail=$line; fi
    done
    jq -nc --arg server "$server" --argjson n "$n" --argjson lo "$lo" --argjson hi "$hi" \
        --argjson best "${best:-null}" --argjson fail "${fail:-null}" '
        {server: $server, n: $n, max_offered_passing: $lo, lowest_offered_failing: (if $hi > 0 then $hi else null end),
         max_delivered_per_s: ($best.deliveries_per_s_median // 0), at_max: $best, first_fail: $fail,
         capped_by_search: ($hi == 0)}' >>"$results"
}

bench_max() {
    local results="$OUT/gateway-max.jsonl" probes="$OUT/gateway-max-probes.jsonl"
    : >"$results"
    : >"$probes"
    echo "== max: servers ${GW_SERVERS:-gateway node}, N ${GW_N:-100 1000 5000}: highest rate with p99 < ${GW_MAX_P99_MS:-50} ms, 0 lost =="
    machine
    for n in ${GW_N:-100 1000 5000}; do
        for server in ${GW_SERVERS:-gateway node}; do
            max_search "$server" "$n" "$probes" "$results"
            tail -n1 "$results"
        done
    done
    printf '\n%-8s %6s %14s %14s %10s %10s %s\n' server N max_passing/s lowest_fail/s p99_ms gen_cpu why_the_next_failed
    jq -r '[.server, .n, .max_delivered_per_s, (.lowest_offered_failing // "-"), (.at_max.p99_ms // "-"), (.at_max.cpu_chorus_pct // "-"),
            (.first_fail | if . == null then "none failed up to the search cap" else "p99 \(.p99_ms) ms, lost \(.lost), connected \(.connections_ok)" end)] | @tsv' \
        "$results" | awk -F'\t' '{printf "%-8s %6s %14s %14s %10s %9s%% %s\n", $1, $2, $3, $4, $5, $6, $7}'
    jq -rs 'group_by(.n)[] | (map(select(.server == "gateway"))[0]) as $g | select($g != null)
        | .[] | select(.server != "gateway")
        | "N=\(.n): gateway / \(.server) = \(if .max_delivered_per_s > 0 then ($g.max_delivered_per_s / .max_delivered_per_s * 100 | floor) / 100 else "n/a" end)\(if $g.capped_by_search then " (the gateway passed every rate tried: a lower bound)" else "" end)"' \
        "$results"
}

# Gateway RSS with $1 clients that join at $2/s and stay ($3: the label),
# against server $4 (gateway or baseline): RSS at the start, the peak, and
# "idle" once all have joined and the gateway is quiet again (under 5% CPU
# over 1 s; the join announcements are N^2 deliveries); at most 240 s after
# the last join. Then the clients are stopped.
memory_run() {
    local n=$1 per_s=$2 label=$3
    local over=$((n / per_s)) dir="$OUT/gateway-$label-${4:-gateway}"
    wait_quiet
    start_server "${4:-gateway}"
    local rss0 peak=0 rss joined=0 last=-1 steady=0 idle="" c0 c1
    rss0=$(rss_kib "$SERVER_PID")
    rm -rf "$dir"
    taskset -c 1 "$BIN/chorus" run bench/scenarios/join-idle.yml --target "http://127.0.0.1:$PORT" \
        --set "load.phases.0.ramp.to=$n" --set "load.phases.0.ramp.over=${over}s" \
        --set "groups.0.flow.3.listen=$((over + 300))s" --set "load.phases.1.hold=300s" \
        --set max_duration=$((over + 330))s --out "$dir" --quiet --no-report >"$dir.log" 2>&1 &
    local chorus_pid=$! started=$SECONDS
    local deadline=$((SECONDS + over + 240))
    while ((SECONDS < deadline)); do
        c0=$(cpu_seconds "$SERVER_PID")
        sleep 1
        c1=$(cpu_seconds "$SERVER_PID")
        rss=$(rss_kib "$SERVER_PID")
        ((rss > peak)) && peak=$rss
        joined=$(curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^chorus_gateway_joined_users / {print $2}')
        # Settled: every client joined, or no more joining for 5 s (the
        # generator may fall behind), and the gateway quiet.
        if [[ ${joined:-0} == "$last" ]]; then steady=$((steady + 1)); else steady=0; fi
        last=${joined:-0}
        if ((SECONDS - started > over)) && { [[ ${joined:-0} -ge $n ]] || ((steady >= 5)); } &&
            (($(echo "($c1 - $c0) < 0.05" | bc))); then
            idle=$rss
            break
        fi
    done
    local settled=$((SECONDS - started)) slow trimmed=""
    if [[ -n ${GW_TRIM:-} && -n $idle ]]; then
        # What the allocator keeps: RSS again after glibc's malloc_trim(0) (a
        # no-op for another allocator's heap).
        gdb -p "$SERVER_PID" -batch -ex 'call (int)malloc_trim(0)' >/dev/null 2>&1 || true
        trimmed=$(rss_kib "$SERVER_PID")
    fi
    slow=$(curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^chorus_gateway_slow_consumer_disconnects_total / {print $2}')
    kill -INT "$chorus_pid" 2>/dev/null || true
    wait "$chorus_pid" || true
    cleanup
    jq -nc --arg run "$label" --arg server "${4:-gateway}" --argjson n "$n" --argjson per_s "$per_s" \
        --argjson rss0 "$rss0" --argjson idle "${idle:-null}" --argjson peak "$peak" \
        --argjson joined "${joined:-0}" --argjson slow "${slow:-0}" --argjson settled "$settled" \
        --argjson trimmed "${trimmed:-null}" '
        {run: $run, server: $server, clients: $n, joins_per_s: $per_s, joined_at_idle: $joined,
         seconds_to_idle: $settled, rss_start_kib: $rss0, rss_idle_kib: $idle, rss_peak_kib: $peak,
         per_socket_kib: (if $idle and $joined > 0 then (($idle - $rss0) / $joined * 100 | floor) / 100 else null end),
         rss_trimmed_kib: $trimmed,
         per_socket_trimmed_kib: (if $trimmed and $joined > 0 then (($trimmed - $rss0) / $joined * 100 | floor) / 100 else null end),
         peak_over_idle: (if $idle then (($peak / $idle * 100) | floor) / 100 else null end),
         gateway_slow_consumer_disconnects: $slow,
         chorus: ($summary[0].counters // {} | with_entries(select(.key | test("^(connections|errors|timeouts|disconnects)"))))}' \
        --slurpfile summary <(cat "$dir/summary.json" 2>/dev/null || echo '{}') | tee -a "$OUT/gateway-memory.jsonl"
}

case ${1:-fanout} in
    fanout | sweep | max | memory | storm | all) ;;
    *)
        echo "usage: $0 [fanout|sweep|max|memory|storm|all]" >&2
        exit 2
        ;;
esac
if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p chorus -p chorus-gateway --bins
    cargo build --release -p chorus --example bench_bare_fanout --example bench_plot
fi
[[ -d bench/peers/node/node_modules ]] || (cd bench/peers/node && npm ci --no-audit --no-fund)
case ${1:-fanout} in
    fanout) bench_fanout ;;
    sweep) bench_sweep ;;
    max) bench_max ;;
    memory) machine && memory_run "${GW_IDLE:-10000}" "${GW_IDLE_RATE:-250}" idle "${GW_MEMORY_SERVER:-gateway}" ;;
    storm) machine && memory_run "${GW_STORM:-10000}" "${GW_STORM_RATE:-50}" storm "${GW_MEMORY_SERVER:-gateway}" ;;
    all)
        bench_fanout
        machine
        memory_run "${GW_IDLE:-10000}" "${GW_IDLE_RATE:-250}" idle
        memory_run "${GW_STORM:-10000}" "${GW_STORM_RATE:-50}" storm
        ;;
esac
