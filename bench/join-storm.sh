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
# deliveries; writes bench/out/join-storm.json. Takes ~2 min.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CHORUS_BIN_DIR:-target/release}
OUT=${BENCH_OUT:-bench/out}
PORT=${STORM_PORT:-3471}
CLIENTS=${STORM_CLIENTS:-5000}
export JWT_SECRET=${JWT_SECRET:-chorus-bench-secret-0123456789abcdef}
mkdir -p "$OUT"

source bench/lib.sh

[[ -x /usr/bin/time ]] || { echo "GNU time is needed (Debian package: time)" >&2; exit 1; }
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -p chorus -p chorus-gateway --bins
# 5,000 sockets on each side, and a few more.
ulimit -n "$(ulimit -Hn)"

echo "== join storm: $CLIENTS listen-only clients joining at 100/s =="
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)  nofile: $(ulimit -n)"

start_gateway "$PORT"

# CPU seconds (user + system) a process has used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
gw0=$(cpu_seconds "$SERVER_PID")

RUN="$OUT/join-storm-run"
rm -rf "$RUN"
over=$((CLIENTS / 100))
/usr/bin/time -f "%U %S %M %e" -o "$OUT/join-storm.time" taskset -c 1 "$BIN/chorus" run bench/scenarios/join-storm.yml \
    --target "http://127.0.0.1:$PORT" --out "$RUN" --quiet --no-report \
    --set "load.phases.0.ramp.to=$CLIENTS" --set "load.phases.0.ramp.over=${over}s" \
    >"$OUT/join-storm.log" 2>&1 || echo "warning: chorus exited non-zero (see $OUT/join-storm.log)" >&2
gateway_cpu=$(awk -v a="$gw0" -v b="$(cpu_seconds "$SERVER_PID")" 'BEGIN {printf "%.2f", b - a}')
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# GNU time writes a first line of its own when the command fails.
read -r user sys maxrss_kib wall < <(tail -n1 "$OUT/join-storm.time")
jq --argjson user "$user" --argjson sys "$sys" --argjson rss "$maxrss_kib" --argjson wall "$wall" \
    --argjson clients "$CLIENTS" --argjson gateway_cpu "$gateway_cpu" --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
    def c(n): .counters[n] // 0;
    {date: $date, workload: "bench/scenarios/join-storm.yml", clients: $clients,
     cpu_user_s: $user, cpu_system_s: $sys, cpu_s: ($user + $sys), max_rss_mib: ($rss / 1024), wall_s: $wall,
     gateway_cpu_s: $gateway_cpu, verdict, bottleneck: .driver.bottleneck, runtime_lag_p99_ms: (.driver.runtime_lag_p99_us / 1000),
     cpu_percent_max: .driver.cpu_percent_max, notes: .driver.notes,
     connections_ok: c("connections.ok"), connections: c("connections"), connect_errors: ([.counters | to_entries[] | select(.key | startswith("errors.connect")) | {(.key): .value}] | add),
     timeouts_expect: c("timeouts.expect"),
     userOnline: c("deliveries.received.userOnline"), userOffline: c("deliveries.received.userOffline"),
     violations}
    | . + {cpu_us_per_announcement: (if (.userOnline + .userOffline) > 0 then .cpu_s * 1e6 / (.userOnline + .userOffline) else null end)}' \
    "$RUN/summary.json" >"$OUT/join-storm.json"
jq -r '"chorus cpu \(.cpu_s) s (user \(.cpu_user_s), sys \(.cpu_system_s)) in \(.wall_s) s, rss \(.max_rss_mib | floor) MiB",
       "gateway cpu \(.gateway_cpu_s) s",
       "runtime lag p99 \(.runtime_lag_p99_ms) ms, bottleneck \(.bottleneck), cpu max \(.cpu_percent_max | floor)%",
       "connections.ok \(.connections_ok) of \(.clients), expect timeouts \(.timeouts_expect), connect errors \(.connect_errors)",
       "userOnline \(.userOnline), userOffline \(.userOffline), \(.cpu_us_per_announcement // "n/a" | tostring | .[0:5]) us CPU per announcement",
       "verdict \(.verdict), violations \(.violations)", (.notes // [] | .[])' "$OUT/join-storm.json"
echo "wrote $OUT/join-storm.json"
