#!/usr/bin/env bash
# Reproduces the table of BENCHMARKS.md: builds allday's benchmark binary and CLI with the flex
# and (unless ALLDAY_BENCH_TCH=0) the tch backend, trains a one-epoch run for `allday eval`,
# runs everything interleaved with the PyTorch and FAISS reference (bench/harness.py), then
# profiles a flex training step (bench/profile_step.py).
#
#   bench/run.sh [--data DIR] [--rounds N] [--threads N]
#                [--only train encode backbone eval search]
#
# Writes bench/results/ (table.md, results.json, log.txt, profile.md). Once the binaries are
# built, it took 8 minutes on an idle 2-core machine. Timings are for reading, never for CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

VENV="${ALLDAY_BENCH_VENV:-$HOME/.cache/allday-bench-venv}"
[[ -x "$VENV/bin/python" ]] || bash bench/setup.sh
DATA="$(realpath ../shared/data/gardens_point 2>/dev/null || true)"
ARGS=()
# The cases of --only; all of them by default.
ONLY=" train encode backbone eval search "
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) DATA="$(realpath "$2")"; shift 2 ;;
        --only)
            ARGS+=("$1"); shift
            ONLY=" "
            while [[ $# -gt 0 && "$1" != --* ]]; do ONLY+="$1 "; ARGS+=("$1"); shift; done ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
if [[ ! -d "$DATA/night_right" ]]; then
    echo "error: Gardens Point not found at '$DATA'; pass --data DIR" >&2
    exit 1
fi

# Every build writes release/allday-bench or release/allday, so each binary is copied aside.
BIN_DIR="$CARGO_TARGET_DIR/bench-binaries"
mkdir -p "$BIN_DIR" bench/results
cargo build --release --quiet -p allday-bench -p allday-cli
cp "$CARGO_TARGET_DIR/release/allday-bench" "$BIN_DIR/allday-bench-flex"
cp "$CARGO_TARGET_DIR/release/allday" "$BIN_DIR/allday-flex"
TCH=()
if [[ "${ALLDAY_BENCH_TCH:-1}" != 0 ]]; then
    source bench/tch-env.sh
    cargo build --release --quiet -p allday-bench -p allday-cli --features tch
    cp "$CARGO_TARGET_DIR/release/allday-bench" "$BIN_DIR/allday-bench-tch"
    cp "$CARGO_TARGET_DIR/release/allday" "$BIN_DIR/allday-tch"
    TCH=(--tch "$BIN_DIR/allday-bench-tch" --allday-tch "$BIN_DIR/allday-tch")
fi

# `allday eval` needs a checkpoint; its cost does not depend on how long it was trained.
EVAL_RUN=bench/results/eval-run
if [[ "$ONLY" == *" eval "* && ! -d "$EVAL_RUN/checkpoints" ]]; then
    rm -rf "$EVAL_RUN"
    "$BIN_DIR/allday-flex" train --config configs/quick.toml --data "$DATA" --epochs 1 \
        --out "$EVAL_RUN" > bench/results/eval-run.log 2>&1
fi

"$VENV/bin/python" bench/harness.py --flex "$BIN_DIR/allday-bench-flex" "${TCH[@]}" \
    --allday-flex "$BIN_DIR/allday-flex" --eval-run "$EVAL_RUN" --data "$DATA" "${ARGS[@]}"
# The profile covers a training step and EfficientNet-Lite0 inference.
if [[ "$ONLY" == *" train "* || "$ONLY" == *" backbone "* ]]; then
    "$VENV/bin/python" bench/profile_step.py --flex "$BIN_DIR/allday-bench-flex" --data "$DATA"
fi
