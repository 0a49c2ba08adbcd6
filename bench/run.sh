#!/usr/bin/env bash
# Reproduces the table of BENCHMARKS.md: builds allday's benchmark binary with the flex and
# (unless ALLDAY_BENCH_TCH=0) the tch backend, then runs it interleaved with the PyTorch and
# FAISS reference (bench/harness.py) and profiles a flex training step.
#
#   bench/run.sh [--data DIR] [--rounds N] [--only train encode search]
#
# Writes bench/results/ (table.md, results.json, log.txt, profile.md). Takes about
# 40 minutes on a 2-core machine. Timings are for reading, never for CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

VENV="${ALLDAY_BENCH_VENV:-$HOME/.cache/allday-bench-venv}"
[[ -x "$VENV/bin/python" ]] || bash bench/setup.sh
DATA="$(realpath ../shared/data/gardens_point 2>/dev/null || true)"
ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) DATA="$(realpath "$2")"; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
if [[ ! -d "$DATA/night_right" ]]; then
    echo "error: Gardens Point not found at '$DATA'; pass --data DIR" >&2
    exit 1
fi

# Both builds write release/allday-bench, so each binary is copied aside after its build.
BIN_DIR="$CARGO_TARGET_DIR/bench-binaries"
mkdir -p "$BIN_DIR"
cargo build --release --quiet -p allday-bench
cp "$CARGO_TARGET_DIR/release/allday-bench" "$BIN_DIR/allday-bench-flex"
TCH=()
if [[ "${ALLDAY_BENCH_TCH:-1}" != 0 ]]; then
    source bench/tch-env.sh
    cargo build --release --quiet -p allday-bench --features tch
    cp "$CARGO_TARGET_DIR/release/allday-bench" "$BIN_DIR/allday-bench-tch"
    TCH=(--tch "$BIN_DIR/allday-bench-tch")
fi

"$VENV/bin/python" bench/harness.py --flex "$BIN_DIR/allday-bench-flex" "${TCH[@]}" \
    --data "$DATA" "${ARGS[@]}"
"$VENV/bin/python" bench/profile_step.py --flex "$BIN_DIR/allday-bench-flex" --data "$DATA"
