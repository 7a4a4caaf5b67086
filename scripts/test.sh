#!/usr/bin/env bash
# The test command: set-up, a build from scratch (or incremental), then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
build_dir=${BUILD_DIR:-build}
cd "$build_dir"
ctest --output-on-failure -j "${JOBS:-2}" "$@"
