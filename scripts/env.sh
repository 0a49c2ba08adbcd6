# Shared settings of allday's scripts; sourced, not run.
# Builds go to a target directory outside the clone so that fresh clones (and CI) reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/allday-target}"
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust 1.95 or newer from https://rustup.rs" >&2
    exit 1
fi
