#!/usr/bin/env bash
# Coverage-guided fuzzing of everything chorus parses from untrusted bytes.
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#
# Installs what it needs when missing (cargo-afl and its AFL++ build, from
# crates.io), builds every target instrumented (in fuzz/target), replays the
# committed corpus (fuzz/corpus/<target>/, regression-* files included), then
# runs each target under afl-fuzz for SECONDS (default 30), two at a time.
# Exits non-zero when a corpus file fails or AFL found a crash or a hang,
# printing each such input and what the target said about it.
set -euo pipefail

SECONDS_PER_TARGET="${1:-30}"
shift || true
cd "$(dirname "$0")"
FUZZ_DIR="$PWD"
ALL_TARGETS=(eio_packet sio_packet polling_payload eio3_payload jwt gateway client scenario set_value protocol_model conform_cases compare merge)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")
# Targets that talk to real sockets get a generous hang bound; the others are pure.
NET_TARGETS=" gateway client "
SLOW_TARGETS=" gateway client merge compare conform_cases "
PARALLEL="${FUZZ_PARALLEL:-2}"
# Address-space bound per target process: an input that makes a parser
# allocate without bound fails its allocation and counts as a crash (and
# cannot starve the machine).
MEMORY_MB="${FUZZ_MEMORY_MB:-4096}"
CARGO_AFL_VERSION=0.18.2

# Non-interactive, as root, in CI: no UI, no CPU-governor or core_pattern
# checks, no core binding (the cores are shared), no prompts.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 \
  AFL_NO_AFFINITY=1 AFL_IGNORE_SEED_PROBLEMS=1 AFL_SKIP_CRASHES=1 \
  AFL_NO_WARN_INSTABILITY=1 AFL_QUIET=1
# Scratch files of the file-reading targets (merge, compare): in memory when possible.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export FUZZ_TMP=/dev/shm/chorus-fuzz
else
  export FUZZ_TMP="$FUZZ_DIR/out/tmp"
fi

step() { printf '== %s (%ss)\n' "$1" "$SECONDS" >&2; }

step "install"
if ! cargo afl --version >/dev/null 2>&1; then
  cargo install cargo-afl --locked --version "$CARGO_AFL_VERSION"
fi
# Builds AFL++ from the source bundled in cargo-afl, once per toolchain.
if ! out=$(cargo afl config --build 2>&1); then
  if ! grep -q "already built" <<<"$out"; then
    printf '%s\n' "$out" >&2
    exit 1
  fi
fi

step "build"
cargo afl build --release --bins

rm -rf out "$FUZZ_TMP" && mkdir -p out "$FUZZ_TMP"
failed=0

# Prints an input readably: text as is (control bytes escaped), at most 2 KiB.
show() { head -c 2048 "$1" | cat -v; echo; }

step "replay the corpus"
for t in "${TARGETS[@]}"; do
  for f in corpus/"$t"/*; do
    [ -f "$f" ] || continue
    if ! (ulimit -v $((MEMORY_MB * 1024)) && timeout 60 "target/release/$t" <"$f") >out/replay.log 2>&1; then
      echo "FAIL: $f (the committed input fails $t):" >&2
      show "$f" >&2
      tail -n 5 out/replay.log >&2
      failed=1
    fi
  done
done

step "fuzz ${#TARGETS[@]} targets for ${SECONDS_PER_TARGET}s each, $PARALLEL at a time"
fuzz_one() {
  local t="$1" timeout_ms=2000
  [[ "$NET_TARGETS" == *" $t "* ]] && timeout_ms=20000
  # Trimming a large seed of a slow target would eat its whole time budget.
  local env=()
  [[ "$SLOW_TARGETS" == *" $t "* ]] && env=(AFL_DISABLE_TRIM=1)
  env "${env[@]}" cargo afl fuzz -V "$SECONDS_PER_TARGET" -t "$timeout_ms" -m "$MEMORY_MB" \
    -i "corpus/$t" -o "out/$t" -- "target/release/$t" >"out/$t.log" 2>&1 || {
    echo "afl-fuzz failed for $t:" >&2
    tail -n 20 "out/$t.log" >&2
    return 1
  }
}
pids=()
for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do wait -n || failed=1; done
  fuzz_one "$t" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done

step "results"
stat() { grep -E "^$2 " "out/$1/default/fuzzer_stats" 2>/dev/null | awk -F': ' '{print $2}'; }
printf '%-16s %8s %12s %8s %8s %8s %8s\n' target seeds execs secs execs/s crashes hangs
for t in "${TARGETS[@]}"; do
  crashes=(out/"$t"/default/crashes/id:*)
  hangs=(out/"$t"/default/hangs/id:*)
  [ -e "${crashes[0]}" ] || crashes=()
  [ -e "${hangs[0]}" ] || hangs=()
  printf '%-16s %8s %12s %8s %8s %8s %8s\n' "$t" "$(ls "corpus/$t" | wc -l)" \
    "$(stat "$t" execs_done)" "$(stat "$t" run_time)" "$(stat "$t" execs_per_sec)" \
    "${#crashes[@]}" "${#hangs[@]}"
  shown=0
  for f in "${crashes[@]}" "${hangs[@]}"; do
    failed=1
    shown=$((shown + 1))
    if [ "$shown" -gt 3 ]; then
      echo "--- $t: $(( ${#crashes[@]} + ${#hangs[@]} - 3 )) more in out/$t/default/" >&2
      break
    fi
    echo "--- $t found: $f" >&2
    show "$f" >&2
    timeout 60 "target/release/$t" <"$f" 2>&1 | grep -m3 -E "panicked|allocation|error" >&2 || true
  done
done
rm -rf "$FUZZ_TMP"
if [ "$failed" -ne 0 ]; then
  echo "fuzzing FAILED: see the inputs above; save each as fuzz/corpus/<target>/regression-<name> once fixed" >&2
  exit 1
fi
echo "fuzzing passed: ${#TARGETS[@]} targets, ${SECONDS_PER_TARGET}s each, no crash or hang"
