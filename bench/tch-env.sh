# Environment for building and running allday with `--features tch`; sourced, not run.
# burn-tch links libtorch through the tch crate 0.22, which expects libtorch 2.9.0. Instead of
# a separate libtorch download, it uses the one inside the torch wheel of the benchmark's venv
# (bench/setup.sh installs torch==2.9.0 there).
_allday_venv="${ALLDAY_BENCH_VENV:-$HOME/.cache/allday-bench-venv}"
if [[ ! -x "$_allday_venv/bin/python" ]]; then
    echo "error: no Python environment at $_allday_venv; run bench/setup.sh first" >&2
    return 1
fi
export LIBTORCH_USE_PYTORCH=1
export PATH="$_allday_venv/bin:$PATH"
_allday_torch_lib="$("$_allday_venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$_allday_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _allday_venv _allday_torch_lib
