#!/usr/bin/env bash
# The main job: train the double VAE on Gardens Point places 0–99 with configs/quick.toml, then
# evaluate night→day retrieval on places 100–199 and render a translation image.
#
#   scripts/main.sh [--data DIR]
#
# DIR contains day_left/, day_right/ and night_right/ [default: ../shared/data/gardens_point].
# Running it again after an interruption resumes training from the last checkpoint; after a
# finished run it only evaluates.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

data_args=()
if [[ $# -gt 0 ]]; then
    if [[ $1 != --data || $# -ne 2 ]]; then
        echo "usage: scripts/main.sh [--data DIR]" >&2
        exit 2
    fi
    data_args=(--data "$2")
fi

run_dir=runs/quick
# `cargo run` builds this clone's code first, so a binary that another checkout built into the
# shared target directory is never used by mistake.
allday() {
    cargo run --release --quiet --bin allday -- "$@"
}

if compgen -G "$run_dir/checkpoints/epoch-*" >/dev/null; then
    allday train --resume "$run_dir" "${data_args[@]}"
else
    allday train --config configs/quick.toml --out "$run_dir" "${data_args[@]}"
fi
allday eval --run "$run_dir" "${data_args[@]}" --matches "$run_dir/matches.csv" --json "$run_dir/eval.json"
allday translate --run "$run_dir" "${data_args[@]}" --out "$run_dir/translation.png"
