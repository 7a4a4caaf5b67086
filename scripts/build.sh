#!/usr/bin/env bash
# Configures and builds safetune with Ninja into build/ (or $BUILD_DIR).
# Extra CMake arguments pass through, e.g. -DCMAKE_PREFIX_PATH=<libtorch> for CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "$@"
fi
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
jobs=${JOBS:-$(nproc)}
ninja -C "$build_dir" -j "$jobs"
