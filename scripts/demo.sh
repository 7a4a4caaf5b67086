#!/usr/bin/env bash
# The main job: set-up, build, then run safetune end to end on an embedded toy setup.
# Extra arguments go to the demo (e.g. --quick, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
bin=${BUILD_DIR:-build}/safetune
if "$bin" --help | grep -qE "^  demo "; then
  exec "$bin" demo "$@"
fi
# Until the full demo lands: build a tiny random Llama in HF layout, read it back,
# print its teacher-forced logits' shape and generate from it with the KV cache.
out=${DEMO_OUT:-runs/demo}
mkdir -p "$out"
"$bin" init --arch llama --out "$out/tiny-llama" --force
"$bin" logits --model "$out/tiny-llama" --ids 1,2,3,4,5 --out "$out/logits.safetensors"
"$bin" generate --model "$out/tiny-llama" --ids 1,2,3 --max-new-tokens 16
echo "demo: model in $out/tiny-llama, logits in $out/logits.safetensors"
