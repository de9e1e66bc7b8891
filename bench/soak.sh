#!/usr/bin/env bash
# bench soak: memory stays flat under a steady load, on both sides.
#   bench/soak.sh                 # 10 minutes (SOAK_SECONDS=600)
#   NO_BUILD=1 SOAK_SECONDS=120 bench/soak.sh
# Knobs: SOAK_SECONDS [600]  SOAK_RATE [40/s messages; x200 deliveries]
#        SOAK_CLIENTS [200]  BENCH_OUT [bench/out]  NO_BUILD
# The reference gateway (strict) runs pinned to core 0 and chorus to core 1,
# on 127.0.0.1 only. The gateway's VmRSS is sampled every 5 s from /proc;
# chorus's own RSS comes from its time series (driver.rss_bytes, every
# second). The verdict, for each side: after a warm-up (the first 20% of the
# hold, at least 60 s), the mean RSS of the last minute is within
# SOAK_TOLERANCE_PCT [5] % (or 2 MiB, whichever is larger) of the mean RSS of
# the first minute after the warm-up, and the least-squares slope over that
# span is printed in KiB/min. Writes bench/out/soak.json.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release
OUT=${BENCH_OUT:-bench/out}
PORT=${SOAK_PORT:-3200}
SECONDS_HOLD=${SOAK_SECONDS:-600}
RATE=${SOAK_RATE:-40/s}
CLIENTS=${SOAK_CLIENTS:-200}
TOL=${SOAK_TOLERANCE_PCT:-5}
export JWT_SECRET=${JWT_SECRET:-chorus-bench-secret-0123456789abcdef}
mkdir -p "$OUT"
RUN_DIR="$OUT/soak"
SAMPLES="$OUT/soak-gateway-rss.tsv"

source bench/lib.sh

[[ -n "${NO_BUILD:-}" ]] || cargo build --release -p chorus -p chorus-gateway --bins

echo "== soak: $CLIENTS joined clients, $RATE messages (everyone receives everything), ${SECONDS_HOLD} s =="
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"

start_gateway "$PORT" "${NO_RATE_LIMIT[@]}"

rm -rf "$RUN_DIR"
taskset -c 1 "$BIN/chorus" run bench/scenarios/soak.yml --target "http://127.0.0.1:$PORT" \
    --set "load.phases.0.ramp.to=$CLIENTS" --set "load.messages.rate=$RATE" \
    --set "groups.0.flow.4.loop.duration=${SECONDS_HOLD}s" \
    --set "groups.1.flow.3.listen=$((SECONDS_HOLD + 12))s" \
    --set "load.phases.1.hold=$((SECONDS_HOLD + 12))s" \
    --set "max_duration=$((SECONDS_HOLD + 90))s" \
    --out "$RUN_DIR" --quiet --no-report &
CHORUS_PID=$!
BENCH_PIDS=("$CHORUS_PID")

# Gateway RSS every 5 s, seconds since the start of the run.
: >"$SAMPLES"
start=$SECONDS
while kill -0 "$CHORUS_PID" 2>/dev/null; do
    awk -v t=$((SECONDS - start)) '/VmRSS/ {print t "\t" $2 * 1024}' "/proc/$SERVER_PID/status" >>"$SAMPLES"
    sleep 5
done
status=0
wait "$CHORUS_PID" || status=$?
BENCH_PIDS=()
echo "chorus run exit code: $status (verdict $(jq -r '.verdict' "$RUN_DIR/summary.json"))"

# chorus RSS per second from its time series, as "t<TAB>bytes".
jq -r '.points | to_entries[] | select(.value.gauges["driver.rss_bytes"] != null)
       | "\(.key)\t\(.value.gauges["driver.rss_bytes"])"' "$RUN_DIR/timeseries.json" >"$OUT/soak-chorus-rss.tsv"

# Steady span: from the warm-up to the end of sending (the ramp and join
# take ~10 s; the last 12 s are the drain and leave).
warm=$((SECONDS_HOLD / 5 < 60 ? 60 : SECONDS_HOLD / 5))
[[ $warm -lt $((SECONDS_HOLD - 60)) ]] || warm=$((SECONDS_HOLD / 3))
end=$((SECONDS_HOLD + 8))

verdict() { # name file -> JSON object
    awk -v name="$1" -v lo="$warm" -v hi="$end" -v tol="$TOL" '
        BEGIN { n = 0 }
        $1 >= lo && $1 <= hi { t[n] = $1; v[n] = $2; n++ }
        END {
            if (n < 4) { printf "{\"side\":\"%s\",\"error\":\"only %d samples in the steady span\"}\n", name, n; exit }
            for (i = 0; i < n; i++) {
                if (t[i] < lo + 60) { fs += v[i]; fc++ }
                if (t[i] > hi - 60) { ls += v[i]; lc++ }
                st += t[i]; sv += v[i]; stt += t[i] * t[i]; stv += t[i] * v[i]
            }
            first = fs / fc; last = ls / lc
            slope = (n * stv - st * sv) / (n * stt - st * st) * 60 / 1024
            growth = (last - first) / first * 100
            allowed = first * tol / 100; if (allowed < 2 * 1048576) allowed = 2 * 1048576
            flat = (last - first <= allowed) ? "true" : "false"
            printf "{\"side\":\"%s\",\"samples\":%d,\"first_minute_mib\":%.2f,\"last_minute_mib\":%.2f,\"growth_pct\":%.2f,\"slope_kib_per_min\":%.1f,\"flat\":%s}\n",
                name, n, first / 1048576, last / 1048576, growth, slope, flat
        }' "$2"
}
gw=$(verdict gateway "$SAMPLES")
ch=$(verdict chorus "$OUT/soak-chorus-rss.tsv")
summary=$(jq -c '{deliveries_received: .counters["deliveries.received.newMessage"], deliveries_lost: .counters["deliveries.lost"], violations: .counters["violations"], connections_ok: .counters["connections.ok"]}' "$RUN_DIR/summary.json")

printf '\n%-8s %8s %14s %13s %9s %15s %5s\n' side samples "first min MiB" "last min MiB" growth "slope KiB/min" flat
for j in "$gw" "$ch"; do
    echo "$j" | jq -r '[.side, .samples, .first_minute_mib, .last_minute_mib, "\(.growth_pct)%", .slope_kib_per_min, .flat] | @tsv' |
        awk -F'\t' '{printf "%-8s %8s %14s %13s %9s %15s %5s\n", $1, $2, $3, $4, $5, $6, $7}'
done
echo "steady span: seconds $warm to $end of the run; run: $summary"

jq -n --argjson gw "$gw" --argjson ch "$ch" --argjson run "$summary" \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg rate "$RATE" \
    --argjson clients "$CLIENTS" --argjson hold "$SECONDS_HOLD" --argjson tol "$TOL" \
    '{date: $date, clients: $clients, rate: $rate, hold_s: $hold, tolerance_pct: $tol, run: $run, sides: [$gw, $ch]}' >"$OUT/soak.json"
echo "wrote $OUT/soak.json"
[[ $status -eq 0 ]] && echo "$gw $ch" | grep -q '"flat":false' && exit 1
exit "$status"
