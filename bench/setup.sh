#!/usr/bin/env bash
# Creates the Python environment of the benchmark: PyTorch, FAISS, numpy and Pillow (which
# decodes images for the reference of `allday eval`). Nothing in allday depends on it; it only
# serves bench/run.sh and the `tch` feature.
#
#   bench/setup.sh            # venv in $ALLDAY_BENCH_VENV (default ~/.cache/allday-bench-venv)
#
# torch is pinned to 2.9.0 because burn-tch 0.22 uses the tch crate 0.22, which is written
# against libtorch 2.9.0; `--features tch` links the libtorch inside this wheel
# (LIBTORCH_USE_PYTORCH=1), so the version must match exactly. The wheel from PyPI pulls the
# CUDA runtime packages as dependencies (about 5 GB). A CPU-only machine does not use them, but
# `import torch` fails without them.
set -euo pipefail

VENV="${ALLDAY_BENCH_VENV:-$HOME/.cache/allday-bench-venv}"
TORCH_VERSION=2.9.0
FAISS_VERSION=1.13.0
NUMPY_VERSION=2.3.4
PILLOW_VERSION=12.0.0

if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet \
    "torch==$TORCH_VERSION" "faiss-cpu==$FAISS_VERSION" "numpy==$NUMPY_VERSION" \
    "pillow==$PILLOW_VERSION"
"$VENV/bin/python" - <<'PY'
import faiss, numpy, PIL, torch
print(f"torch {torch.__version__}, faiss {faiss.__version__}, numpy {numpy.__version__}, pillow {PIL.__version__}")
PY
