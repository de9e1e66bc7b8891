#!/usr/bin/env bash
# Re-records the baselines of the shipped scenarios: each one played against
# the embedded reference gateway by a release build, its summary.json kept in
# reports/baselines/<scenario>/. The soak is recorded shortened to a few
# minutes (its shape, not its 30 minutes); the command says how.
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
# Which baselines: the ones named on the command line, or all.
wanted=("${@:-smoke chat-load presence-churn typing-storm soak rooms}")
for name in ${wanted[@]}; do
    case $name in
        soak) run soak --set load.phases.0.ramp.over=20s --set load.phases.1.hold=2m \
            --set groups.0.flow.3.loop.duration=2m --set groups.1.flow.3.listen=2m ;;
        # A fifth of its size: what the embedded gateway of 2 cores sustains.
        rooms) run rooms --set load.phases.0.ramp.to=2000 --set load.phases.0.ramp.over=40s \
            --set rooms.count=200 ;;
        *) run "$name" ;;
    esac
done
