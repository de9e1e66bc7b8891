#!/usr/bin/env bash
# bench join-storm: 5,000 listen-only clients join at 100/s
# (bench/scenarios/join-storm.yml): N^2 presence work on the driver, every
# newcomer's `onlineUsers` snapshot checked entry by entry and every
# `userOnline`/`userOffline` announcement timed and ledgered.
#   bench/join-storm.sh            # builds chorus and the gateway (release)
#   NO_BUILD=1 bench/join-storm.sh
#   STORM_CLIENTS=2000 NO_BUILD=1 bench/join-storm.sh   # a smaller storm (same 100/s)
# The gateway (strict) is pinned to core 0 and chorus to core 1, on 127.0.0.1
# only. Prints chorus's CPU (GNU time), runtime lag p99 and `driver.bottleneck`
# (its self-health), how many clients connected and joined, and the presence
# deliveries; writes bench/out/join-storm.json. Takes ~2 min per tool.
#   STORM_TOOLS="chorus floor" NO_BUILD=1 bench/join-storm.sh
# also plays the same storm with the floor client (bench/peers/floor,
# `--messages 0 --timestamps`: it joins, reads and counts, nothing else), each
# tool against a gateway of its own, and prints both tools' CPU second by
# second: the seconds at or above chorus's bottleneck line (90 % of its one
# core) show what the storm's peak costs any client on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CHORUS_BIN_DIR:-target/release}
OUT=${BENCH_OUT:-bench/out}
PORT=${STORM_PORT:-3471}
CLIENTS=${STORM_CLIENTS:-5000}
TOOLS=${STORM_TOOLS:-chorus}
export JWT_SECRET=${JWT_SECRET:-chorus-bench-secret-0123456789abcdef}
mkdir -p "$OUT"

source bench/lib.sh

[[ -x /usr/bin/time ]] || { echo "GNU time is needed (Debian package: time)" >&2; exit 1; }
if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p chorus -p chorus-gateway --bins
    [[ $TOOLS != *floor* ]] || cargo build --release -p chorus --example bench_floor_client
fi
# 5,000 sockets on each side, and a few more.
ulimit -n "$(ulimit -Hn)"

echo "== join storm: $CLIENTS listen-only clients joining at 100/s =="
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)  nofile: $(ulimit -n)"

# Seconds the tool needs: the ramp, 60 s of listening, and the leaves.
over=$((CLIENTS / 100))

# The tool's CPU second by second: its peak, and how many seconds reached 90 %.
cpu_profile() {
    local peak
    peak=$(sort -n "$1" | tail -n1)
    echo "${peak:-0} $(awk '$1 >= 90' "$1" | wc -l)"
}

chorus_storm() {
    start_gateway "$PORT"
    local gw0 gateway_cpu run="$OUT/join-storm-run"
    gw0=$(cpu_seconds "$SERVER_PID")
    rm -rf "$run"
    /usr/bin/time -f "%U %S %M %e" -o "$OUT/join-storm.time" taskset -c 1 "$BIN/chorus" run bench/scenarios/join-storm.yml \
        --target "http://127.0.0.1:$PORT" --out "$run" --quiet --no-report \
        --set "load.phases.0.ramp.to=$CLIENTS" --set "load.phases.0.ramp.over=${over}s" \
        >"$OUT/join-storm.log" 2>&1 &
    local pid=$! chorus_pid=""
    # GNU time's child is chorus (taskset execs it): sample that process.
    while [[ -z $chorus_pid ]] && kill -0 "$pid" 2>/dev/null; do
        chorus_pid=$(pgrep -P "$pid" || true)
        [[ -n $chorus_pid ]] || sleep 0.05
    done
    cpu_per_second "${chorus_pid:-$pid}" "$OUT/join-storm-chorus.cpu" &
    BENCH_PIDS+=($!)
    wait "$pid" || echo "warning: chorus exited non-zero (see $OUT/join-storm.log)" >&2
    gateway_cpu=$(awk -v a="$gw0" -v b="$(cpu_seconds "$SERVER_PID")" 'BEGIN {printf "%.2f", b - a}')
    bench_cleanup
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    local user sys maxrss_kib wall peak hot
    # GNU time writes a first line of its own when the command fails.
    read -r user sys maxrss_kib wall < <(tail -n1 "$OUT/join-storm.time")
    read -r peak hot < <(cpu_profile "$OUT/join-storm-chorus.cpu")
    jq --argjson user "$user" --argjson sys "$sys" --argjson rss "$maxrss_kib" --argjson wall "$wall" \
        --argjson clients "$CLIENTS" --argjson gateway_cpu "$gateway_cpu" --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        --argjson peak "$peak" --argjson hot "$hot" '
        def c(n): .counters[n] // 0;
        {tool: "chorus", date: $date, workload: "bench/scenarios/join-storm.yml", clients: $clients,
         cpu_user_s: $user, cpu_system_s: $sys, cpu_s: ($user + $sys), max_rss_mib: ($rss / 1024), wall_s: $wall,
         cpu_peak_pct: $peak, seconds_at_90_pct: $hot,
         gateway_cpu_s: $gateway_cpu, verdict, bottleneck: .driver.bottleneck, runtime_lag_p99_ms: (.driver.runtime_lag_p99_us / 1000),
         cpu_percent_max: .driver.cpu_percent_max, notes: .driver.notes,
         connections_ok: c("connections.ok"), connections: c("connections"), connect_errors: ([.counters | to_entries[] | select(.key | startswith("errors.connect")) | {(.key): .value}] | add),
         timeouts_expect: c("timeouts.expect"),
         userOnline: c("deliveries.received.userOnline"), userOffline: c("deliveries.received.userOffline"),
         violations}
        | . + {cpu_us_per_announcement: (if (.userOnline + .userOffline) > 0 then .cpu_s * 1e6 / (.userOnline + .userOffline) else null end)}' \
        "$run/summary.json" >"$OUT/join-storm.json"
    jq -r '"chorus cpu \(.cpu_s * 100 | round / 100) s (user \(.cpu_user_s), sys \(.cpu_system_s)) in \(.wall_s) s, rss \(.max_rss_mib | floor) MiB",
           "gateway cpu \(.gateway_cpu_s) s",
           "runtime lag p99 \(.runtime_lag_p99_ms) ms, bottleneck \(.bottleneck), cpu max \(.cpu_percent_max | floor)%",
           "cpu per second: peak \(.cpu_peak_pct)%, \(.seconds_at_90_pct) s at or above 90%",
           "connections.ok \(.connections_ok) of \(.clients), expect timeouts \(.timeouts_expect), connect errors \(.connect_errors)",
           "userOnline \(.userOnline), userOffline \(.userOffline), \(.cpu_us_per_announcement // "n/a" | tostring | .[0:5]) us CPU per announcement",
           "verdict \(.verdict), violations \(.violations)", (.notes // [] | .[])' "$OUT/join-storm.json"
    echo "wrote $OUT/join-storm.json"
}

floor_storm() {
    start_gateway "$PORT"
    taskset -c 1 "${CHORUS_EXAMPLES_DIR:-$BIN/examples}/bench_floor_client" --addr "127.0.0.1:$PORT" \
        --users "$CLIENTS" --ramp-s "$over" --messages 0 --think-s 60 --timestamps \
        >"$OUT/join-storm-floor.out" 2>"$OUT/join-storm-floor.log" &
    local pid=$!
    cpu_per_second "$pid" "$OUT/join-storm-floor.cpu" &
    BENCH_PIDS+=($!)
    wait "$pid" || echo "warning: the floor client exited non-zero (see $OUT/join-storm-floor.log)" >&2
    bench_cleanup
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    local peak hot
    read -r peak hot < <(cpu_profile "$OUT/join-storm-floor.cpu")
    jq --argjson peak "$peak" --argjson hot "$hot" --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
        {tool: "floor", date: $date, clients: .users, failed_users, cpu_user_s, cpu_system_s,
         cpu_s: (.cpu_user_s + .cpu_system_s), wall_s, cpu_peak_pct: $peak, seconds_at_90_pct: $hot, frames, reads}
        | . + {cpu_us_per_frame: (if .frames > 0 then .cpu_s * 1e6 / .frames else null end)}' \
        "$OUT/join-storm-floor.out" >"$OUT/join-storm-floor.json"
    jq -r '"floor cpu \(.cpu_s * 100 | round / 100) s (user \(.cpu_user_s), sys \(.cpu_system_s)) in \(.wall_s | floor) s",
           "cpu per second: peak \(.cpu_peak_pct)%, \(.seconds_at_90_pct) s at or above 90%",
           "users \(.clients), failed \(.failed_users), frames \(.frames) in \(.reads) reads, \(.cpu_us_per_frame // "n/a" | tostring | .[0:5]) us CPU per frame"' \
        "$OUT/join-storm-floor.json"
    echo "wrote $OUT/join-storm-floor.json"
}

for tool in $TOOLS; do
    echo "-- $tool --"
    case $tool in
        chorus) chorus_storm ;;
        floor) floor_storm ;;
        *) echo "unknown tool $tool (chorus, floor)" >&2; exit 2 ;;
    esac
done
