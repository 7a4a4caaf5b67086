#!/usr/bin/env bash
# The main job: set-up, build, then the whole method end to end on an embedded toy setup
# (`safetune demo`: several seeds, results.json and report.html in runs/demo).
# Extra arguments go to the demo (e.g. --quick, --seeds 6, --curves, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
exec "${BUILD_DIR:-build}/safetune" demo "$@"
