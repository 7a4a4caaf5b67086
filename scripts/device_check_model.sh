#!/usr/bin/env bash
# GPU check of the model code (needs a CUDA LibTorch build in $BUILD_DIR, default build):
# bf16 CUDA logits follow the fp32 CPU logits of the same random model, generation runs
# on the GPU, and the forward benchmark runs there. Prints one verdict per check.
#   scripts/device_check_model.sh
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${SAFETUNE_BIN:-${BUILD_DIR:-build}/safetune}
py=${PYTHON:-${SAFETUNE_PYTHON:-python3}}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ids=1,5,9,200,257,3,4,5,6,7,8,9,10,11,12,100,101,102,103,104
status=0
for arch in llama qwen2 mistral; do
  extra=""; [ $arch = mistral ] && extra="--sliding-window 6"
  "$bin" init --arch $arch --out "$work/$arch" --kv-heads 2 --init-std 0.2 --init-test $extra >/dev/null || { echo "FAIL $arch init"; status=1; continue; }
  "$bin" logits --model "$work/$arch" --ids $ids --out "$work/$arch/cpu.safetensors" || { echo "FAIL $arch cpu logits"; status=1; continue; }
  "$bin" logits --model "$work/$arch" --ids $ids --out "$work/$arch/cuda.safetensors" --device cuda || { echo "FAIL $arch cuda logits"; status=1; continue; }
  "$py" - "$work/$arch" <<'PY' || status=1
import sys
sys.path.insert(0, "tests/reference")
from safetensors_io import read_safetensors
d = sys.argv[1]
a = read_safetensors(d + "/cpu.safetensors")[0]["logits"].double()
b = read_safetensors(d + "/cuda.safetensors")[0]["logits"].double()
diff, scale = (a - b).abs().max().item(), a.abs().max().item()
ok = diff <= 0.05 * scale
print("%s %s: bf16 CUDA vs fp32 CPU max abs diff %.3g (logit scale %.3g)" % ("PASS" if ok else "FAIL", d.rsplit("/", 1)[1], diff, scale))
sys.exit(0 if ok else 1)
PY
  if "$bin" generate --model "$work/$arch" --ids 1,2,3 --ids 4 --max-new-tokens 16 --device cuda >/dev/null; then
    echo "PASS $arch generate on cuda"
  else
    echo "FAIL $arch generate on cuda"; status=1
  fi
done
"$bin" bench gemm --json --device cuda || status=1
"$bin" bench forward --init-25m --batch 8 --seq 256 --json --device cuda || status=1
exit $status
