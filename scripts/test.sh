#!/usr/bin/env bash
# Runs allday's test suite. Some tests read the Gardens Point photographs from
# ../shared/data/gardens_point, or from $ALLDAY_GARDENS_POINT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo test --workspace "$@"
