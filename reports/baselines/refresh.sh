#!/usr/bin/env bash
# Re-records the baselines of the shipped scenarios: each one played against
# the embedded reference gateway by a release build, its summary.json kept in
# reports/baselines/<scenario>/. The soak is recorded shortened to a few
# minutes (its shape, not its 30 minutes); the command says how. The
# cluster scenario runs against two strict nodes (`chorus serve`, the
# reference gateway) joined by a local redis-server (which must be installed).
# Compare a run with one: chorus compare reports/baselines/smoke RUN_DIR
# Usage: reports/baselines/refresh.sh [SCENARIO...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q
run() {
    local name=$1; shift
    local out
    out=$(mktemp -d)
    echo "== $name"
    ./target/release/chorus run "scenarios/$name.yml" --out "$out" --quiet --no-report "$@" || true
    mkdir -p "reports/baselines/$name"
    cp "$out/summary.json" "reports/baselines/$name/summary.json"
    rm -rf "$out"
}
# The cluster baseline: redis-server and two strict release nodes on free
# ports, joined by --cluster, stopped afterwards.
run_cluster() {
    local redis n1 n2 pids=()
    port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    redis=$(port); n1=$(port); n2=$(port)
    redis-server --port "$redis" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
    sleep 0.5
    export JWT_SECRET=baseline-secret
    for n in "$n1" "$n2"; do
        ./target/release/chorus serve --addr "127.0.0.1:$n" --jwt-secret "$JWT_SECRET" \
            --cluster "redis://127.0.0.1:$redis" --log-level warn & pids+=($!)
    done
    sleep 1
    run cluster --target "http://127.0.0.1:$n1" --target "http://127.0.0.1:$n2"
    kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
}
# Which baselines: the ones named on the command line, or all.
wanted=("${@:-smoke chat-load presence-churn typing-storm soak rooms cluster}")
for name in ${wanted[@]}; do
    case $name in
        cluster) run_cluster ;;
        soak) run soak --set load.phases.0.ramp.over=20s --set load.phases.1.hold=2m \
            --set groups.0.flow.3.loop.duration=2m --set groups.1.flow.3.listen=2m ;;
        # A fifth of its size: what the embedded gateway of 2 cores sustains.
        rooms) run rooms --set load.phases.0.ramp.to=2000 --set load.phases.0.ramp.over=40s \
            --set rooms.count=200 ;;
        *) run "$name" ;;
    esac
done
