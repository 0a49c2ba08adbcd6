#!/usr/bin/env bash
# Kills a real training run with SIGKILL at random moments, resumes it to the end each time, and
# checks that the final weights and per-epoch losses are identical, bit for bit, to those of an
# uninterrupted run.
#
#   scripts/kill-resume.sh [TRIALS] [DATA_DIR]
#
# TRIALS defaults to 10. DATA_DIR contains day_left/, day_right/ and night_right/
# [default: ../shared/data/gardens_point]. Each trial trains a small model (32×24 images, 8/16/16
# channels, 6 epochs) on Gardens Point places 0–89, so a trial takes well under a minute on a
# 2-core CPU. Exits 1 at the first trial that differs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

trials=${1:-10}
data=${2:-../shared/data/gardens_point}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --bin allday
# A copy, so that a build from another checkout into the shared target directory cannot swap
# the binary during the trials.
allday="$work/allday"
cp "$CARGO_TARGET_DIR/release/allday" "$allday"

cat > "$work/small.toml" <<EOF
[data]
root = "$(cd "$data" && pwd)"
width = 32
height = 24
[model]
channels = [8, 16, 16]
[training]
epochs = 6
save_every = 1
EOF

# Prints what must match between runs. The first line is the fingerprint of the final weights, a
# SHA-256 of the parameter values that, unlike the file's checksum, ignores burn's random
# parameter ids. Then come the columns of metrics.csv without the last one, the wall time.
fingerprint() {
    local run=$1
    grep -o '"vae": "[0-9a-f]*"' "$run/checkpoints/epoch-000006/state.json"
    sed 's/,[^,]*$//' "$run/metrics.csv"
}

echo "uninterrupted run"
"$allday" train --config "$work/small.toml" --out "$work/straight" --no-progress 2>/dev/null
expected=$(fingerprint "$work/straight")
started_ns=$(date +%s%N)
"$allday" train --config "$work/small.toml" --out "$work/timing" --no-progress 2>/dev/null
duration_ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))

for trial in $(seq 1 "$trials"); do
    run="$work/trial-$trial"
    # Kill at a random moment within the run's duration, in milliseconds. A run that finished
    # first (the machine is sometimes faster than when it was timed) is not a trial: draw again.
    while true; do
        rm -rf "$run"
        delay_ms=$(( (RANDOM * 32768 + RANDOM) % duration_ms + 1 ))
        "$allday" train --config "$work/small.toml" --out "$run" --no-progress 2>/dev/null &
        pid=$!
        sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        if [[ ! -d "$run/checkpoints/epoch-000006" ]]; then
            break
        fi
        duration_ms=$(( delay_ms > 1 ? delay_ms - 1 : 1 ))
    done

    resumes=0
    restarts=0
    until [[ -d "$run/checkpoints/epoch-000006" ]]; do
        if compgen -G "$run/checkpoints/epoch-*" >/dev/null; then
            "$allday" train --resume "$run" --no-progress 2>/dev/null
            resumes=$((resumes + 1))
        else
            # Killed before the first checkpoint: nothing to resume, so start again.
            rm -rf "$run"
            "$allday" train --config "$work/small.toml" --out "$run" --no-progress 2>/dev/null
            restarts=$((restarts + 1))
        fi
    done

    if [[ "$(fingerprint "$run")" != "$expected" ]]; then
        echo "trial $trial: killed after ${delay_ms} ms, resumed $resumes, restarted $restarts time(s): DIFFERS from the uninterrupted run"
        diff <(echo "$expected") <(fingerprint "$run") || true
        exit 1
    fi
    echo "trial $trial: killed after ${delay_ms} ms, resumed $resumes, restarted $restarts time(s): identical"
done
echo "$trials passed, 0 failed"
