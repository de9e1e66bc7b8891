#!/usr/bin/env bash
# bench artillery: chorus and Artillery 2 play the same ordinary-rate chat
# workload (bench/scenarios/chat200.yml and its twin
# bench/peers/artillery/chat200.yml: 200 users, 20 messages each 2 s apart,
# everyone receives everything) against the same reference gateway, one after
# the other in one run, and the script prints the CPU each tool used.
#   bench/artillery.sh            # builds chorus, installs Artillery 2.0.21 (npm ci)
#   NO_BUILD=1 bench/artillery.sh
# The gateway (strict, rate limit raised: Artillery's users share one token)
# is pinned to core 0 and the tool under test to core 1, on 127.0.0.1 only.
# CPU (user + system) and peak RSS come from GNU time; deliveries from the
# gateway's own counter (chorus_gateway_deliveries_total, the same witness
# for both tools) and, for chorus, from its summary. Writes bench/out/artillery.json.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CHORUS_BIN_DIR:-target/release}
OUT=${BENCH_OUT:-bench/out}
PORT=${ARTILLERY_PORT:-3300}
PEER=bench/peers/artillery
export JWT_SECRET=${JWT_SECRET:-chorus-bench-secret-0123456789abcdef}
mkdir -p "$OUT"

source bench/lib.sh

[[ -x /usr/bin/time ]] || { echo "GNU time is needed (Debian package: time)" >&2; exit 1; }
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -p chorus -p chorus-gateway --bins
if [[ ! -x "$PEER/node_modules/.bin/artillery" ]]; then
    # Artillery pulls in Playwright, whose install script downloads a browser
    # that this benchmark does not use.
    (cd "$PEER" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

echo "== chorus vs Artillery 2: 200 users x 20 messages, everyone receives everything =="
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
echo "artillery: $("$PEER/node_modules/.bin/artillery" version 2>/dev/null | sed -n 's/^ *Artillery: *//p' | head -n1)  node: $(node --version)"

start_gateway "$PORT" "${NO_RATE_LIMIT[@]}"

gateway_deliveries() {
    curl -sf "http://127.0.0.1:$PORT/metrics" | awk '$1 == "chorus_gateway_deliveries_total" {print $2}'
}

# measure NAME CMD...: runs CMD on core 1 under GNU time; prints one JSON object.
measure() {
    local name=$1 d0 d1 times
    shift
    d0=$(gateway_deliveries)
    /usr/bin/time -f "%U %S %M %e" -o "$OUT/artillery-$name.time" taskset -c 1 "$@" \
        >"$OUT/artillery-$name.log" 2>&1 || echo "warning: $name exited non-zero (see $OUT/artillery-$name.log)" >&2
    d1=$(gateway_deliveries)
    read -r user sys maxrss_kib wall <"$OUT/artillery-$name.time"
    jq -n --arg name "$name" --argjson user "$user" --argjson sys "$sys" --argjson rss "$maxrss_kib" \
        --argjson wall "$wall" --argjson deliveries "$((d1 - d0))" \
        '{tool: $name, cpu_user_s: $user, cpu_system_s: $sys, cpu_s: ($user + $sys), max_rss_mib: ($rss / 1024),
          wall_s: $wall, gateway_deliveries: $deliveries,
          cpu_us_per_delivery: (if $deliveries > 0 then ($user + $sys) * 1e6 / $deliveries else null end)}'
}

rm -rf "$OUT/artillery-chorus-run"
chorus=$(measure chorus "$BIN/chorus" run bench/scenarios/chat200.yml --target "http://127.0.0.1:$PORT" \
    --out "$OUT/artillery-chorus-run" --quiet --no-report)
chorus=$(echo "$chorus" | jq --slurpfile s "$OUT/artillery-chorus-run/summary.json" \
    '. + {verdict: $s[0].verdict, received_newMessage: $s[0].counters["deliveries.received.newMessage"], lost: $s[0].counters["deliveries.lost"]}')

TOKEN=$(cd "$PEER" && node -e 'console.log(require("jsonwebtoken").sign({sub: "artillery", username: "artillery"}, process.env.JWT_SECRET, {expiresIn: "1h"}))')
artillery=$(PORT=$PORT TOKEN=$TOKEN measure artillery "$PEER/node_modules/.bin/artillery" run --quiet "$PEER/chat200.yml")

printf '\n%-10s %8s %8s %8s %9s %12s %12s\n' tool "cpu s" user sys "rss MiB" deliveries "us/delivery"
for j in "$chorus" "$artillery"; do
    echo "$j" | jq -r '[.tool, .cpu_s, .cpu_user_s, .cpu_system_s, (.max_rss_mib | floor), .gateway_deliveries, (.cpu_us_per_delivery // "n/a" | tostring | .[0:6])] | @tsv' |
        awk -F'\t' '{printf "%-10s %8s %8s %8s %9s %12s %12s\n", $1, $2, $3, $4, $5, $6, $7}'
done
echo "$chorus" | jq -r '"chorus: verdict \(.verdict), deliveries.received.newMessage \(.received_newMessage), deliveries.lost \(.lost)"'
ratio=$(jq -n --argjson c "$chorus" --argjson a "$artillery" 'if $c.cpu_s > 0 then ($a.cpu_s / $c.cpu_s * 10 | floor) / 10 else null end')
echo "Artillery used ${ratio}x the CPU of chorus"
jq -n --argjson c "$chorus" --argjson a "$artillery" --argjson r "$ratio" --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    '{date: $date, workload: "bench/scenarios/chat200.yml", tools: [$c, $a], artillery_cpu_over_chorus: $r}' >"$OUT/artillery.json"
echo "wrote $OUT/artillery.json"
