# What the bench scripts share (sourced, not run): stopping what a script
# started when it exits, and the reference gateway pinned to core 0. Needs
# $BIN, the directory that holds chorus-gateway.

SERVER_PID=""
# Other processes a script leaves running in the background, stopped on exit too.
BENCH_PIDS=()
bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}" "$SERVER_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap bench_cleanup EXIT

# The per-subject rate limit lifted, for load it must not shape.
NO_RATE_LIMIT=(--rate-per-sec 1000000 --rate-burst 1000000)

# start_gateway PORT [FLAG...]: the strict reference gateway on 127.0.0.1:PORT,
# pinned to core 0, with room for load (deep queues, 100,000 connections) and
# FLAGs; sets SERVER_PID and returns once /healthz answers (exits if it never does).
start_gateway() {
    local port=$1
    shift
    taskset -c 0 "$BIN/chorus-gateway" --profile strict --addr "127.0.0.1:$port" \
        --queue-size 65536 --max-connections 100000 --log-level warn "$@" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0
        sleep 0.1
    done
    echo "the gateway did not start" >&2
    exit 1
}

# cpu_seconds PID: CPU seconds (user + system) the process has used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

# cpu_per_second PID FILE: appends PID's CPU over each second, in percent of
# one core, to FILE until PID exits. Run it in the background.
cpu_per_second() {
    local pid=$1 file=$2 hz prev cur
    hz=$(getconf CLK_TCK)
    : >"$file"
    prev=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || return 0
    while sleep 1; do
        cur=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || return 0
        echo $(((cur - prev) * 100 / hz)) >>"$file"
        prev=$cur
    done
}
