#!/usr/bin/env bash
# Configures and builds safetune with Ninja into build/ (or $BUILD_DIR), against the
# LibTorch inside the torch wheel of the project's Python environment (.venv, or the
# python named by $SAFETUNE_PYTHON). Extra CMake arguments pass through, e.g.
# -DSAFETUNE_CUDA=OFF, or -DCMAKE_PREFIX_PATH=<another LibTorch> instead of the wheel's.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
py=${SAFETUNE_PYTHON:-$PWD/${SAFETUNE_VENV:-.venv}/bin/python}
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
if [ ! -f "$build_dir/build.ninja" ]; then
  prefix=()
  if [[ " $* " != *" -DCMAKE_PREFIX_PATH="* ]]; then
    [ -x "$py" ] || { echo "build: no Python environment at $py (run scripts/setup.sh)" >&2; exit 1; }
    # The torch package's root first: its lib/ must win over any other libtorch.so on the
    # system's library paths, where TorchConfig.cmake's find_library would also look.
    torch_root=$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
    prefix=("-DCMAKE_PREFIX_PATH=$torch_root;$torch_root/share/cmake")
  fi
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "${prefix[@]}" \
    "-DSAFETUNE_PYTHON=$py" "$@"
fi
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
jobs=${JOBS:-$(nproc)}
ninja -C "$build_dir" -j "$jobs"
