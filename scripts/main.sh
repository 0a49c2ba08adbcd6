#!/usr/bin/env bash
# The main job: train the double VAE on Gardens Point places 0–99 with configs/quick.toml, learn
# its channel weights from labelled triplets of the same places, then evaluate night→day
# retrieval on places 100–199, rank the channels, and render saliency and translation images.
# Last, learn channel weights on pretrained EfficientNet-Lite0 with configs/efficientnet-lite0.toml
# (allday's best embedding) and evaluate them against both day databases.
#
#   scripts/main.sh [--data DIR]
#
# DIR contains day_left/, day_right/ and night_right/ [default: ../shared/data/gardens_point].
# Running it again after an interruption resumes both trainings from their last checkpoints;
# after a finished run it only evaluates.
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
if compgen -G "$run_dir/triplet-d1/checkpoints/epoch-*" >/dev/null; then
    allday train-triplet --from "$run_dir" --resume --run-dir "$run_dir/triplet-d1" "${data_args[@]}"
else
    allday train-triplet --from "$run_dir" --depth 1 "${data_args[@]}"
fi
weights="$run_dir/channel-weights-d1.json"
allday eval --run "$run_dir" "${data_args[@]}" --weights "$weights" \
    --matches "$run_dir/matches.csv" --csv "$run_dir/eval.csv" --json "$run_dir/eval.json"
allday channels --run "$run_dir" "${data_args[@]}" --weights "$weights" --csv "$run_dir/channels.csv"
data_root=${2:-../shared/data/gardens_point}
allday saliency --run "$run_dir" "${data_args[@]}" --top 3 --weights "$weights" \
    --out "$run_dir/saliency" "$data_root/night_right/Image150.jpg"
allday translate --run "$run_dir" "${data_args[@]}" --out "$run_dir/translation.png"

backbone_dir=runs/efficientnet-lite0
if compgen -G "$backbone_dir/checkpoints/epoch-*" >/dev/null; then
    allday train-triplet --backbone efficientnet-lite0 --resume --run-dir "$backbone_dir" "${data_args[@]}"
else
    allday train-triplet --backbone efficientnet-lite0 --config configs/efficientnet-lite0.toml \
        --run-dir "$backbone_dir" "${data_args[@]}"
fi
for database in day_right day_left; do
    allday eval --weights "$backbone_dir/channel-weights-d3.json" "${data_args[@]}" \
        --database "$database" --json "$backbone_dir/eval-$database.json"
done
