#!/usr/bin/env bash
# Training-step benchmark: safetune against an eager PyTorch loop of the same maths.
#
# A ~25M-parameter Llama-shaped model (hidden 512, 8 layers of 8 heads, MLP 1376, vocab
# 32000, tied embeddings: 25.3M in the layers) made by `safetune init`, full fine-tuning,
# batch 8 x 256 tokens, AdamW, grad-clip 1.0. The two are run alternately, ROUNDS times
# each, in one invocation (so that machine load hits both alike); each run reports the
# median (and fastest) of STEPS timed steps after one warm-up step. MFU is safetune's,
# against the fp32 GEMM rate `bench step` measures right after its steps (as `bench gemm`
# does), so that both see the same machine load (formula: `safetune bench step --help`).
# On a shared machine, compare the fastest steps: load from other processes only adds time.
#
# Both run on the same LibTorch (the torch wheel of .venv: MKL GEMMs, libgomp). safetune
# starts its OpenMP workers with passive waiting (src/cli/runtime_env.cpp); a plain python
# keeps libgomp's default (spinning). So PyTorch runs twice per round: as users run it,
# and with OMP_WAIT_POLICY=PASSIVE exported.
#
#   scripts/bench_train.sh [ROUNDS=3] [STEPS=5]
# Environment: SAFETUNE_BIN (default build/safetune), THREADS (default: all cores).
set -euo pipefail
. "$(dirname "$0")/lib/bench.sh"
bench_common "${1:-3}" "${2:-5}"

"$bin" init --arch llama --out "$work/model" --vocab 32000 --hidden 512 --layers 8 --heads 8 --kv-heads 8 \
  --intermediate 1376 --max-pos 2048 --tie --seed 0 > /dev/null
echo '{"instruction": "unused", "output": "unused"}' > "$work/data.jsonl"

ours=() theirs=() mfus=() ours_min=() theirs_min=() gemms=() passive=() passive_min=()
for ((i = 1; i <= rounds; i++)); do
  s=$("$bin" bench step --config "$src/configs/tiny.yaml" model.path="$work/model" data.train="$work/data.jsonl" \
    train.output_dir="$work/run" lora.enabled=false train.batch_size=8 data.max_length=256 train.grad_accum=1 \
    optim.lr=3e-5 train.threads="$threads" --steps "$steps" --warmup 1 --json)
  p=$($py "$src/tests/reference/train_step_reference.py" --model "$work/model" --batch 8 --seq 256 \
    --steps "$steps" --warmup 1 --threads "$threads")
  pp=$(env OMP_WAIT_POLICY=PASSIVE $py "$src/tests/reference/train_step_reference.py" \
    --model "$work/model" --batch 8 --seq 256 --steps "$steps" --warmup 1 --threads "$threads")
  ours+=("$(get "$s" step_ms)") theirs+=("$(get "$p" step_ms)") mfus+=("$(get "$s" mfu)")
  ours_min+=("$(get "$s" step_ms_min)") theirs_min+=("$(get "$p" step_ms_min)") gemms+=("$(get "$s" gemm_gflops)")
  passive+=("$(get "$pp" step_ms)") passive_min+=("$(get "$pp" step_ms_min)")
  echo "round $i: safetune $s"
  echo "round $i: PyTorch eager as shipped $p"
  echo "round $i: PyTorch eager, OMP_WAIT_POLICY=PASSIVE $pp"
done
echo "blas: $(get "$s" blas), $(get "$s" blas_threads) threads, LibTorch $(get "$s" libtorch); CPU: $(lscpu | sed -n 's/^Model name: *//p')"
$py - "${ours[*]}" "${theirs[*]}" "${mfus[*]}" "${ours_min[*]}" "${theirs_min[*]}" "${gemms[*]}" \
  "${passive[*]}" "${passive_min[*]}" <<'PY'
import statistics, sys
ours, theirs, mfu, ours_min, theirs_min, gemm, passive, passive_min = ([float(x) for x in a.split()]
                                                                      for a in sys.argv[1:9])
o, t, tp = statistics.median(ours), statistics.median(theirs), statistics.median(passive)
om, tm, tpm = min(ours_min), min(theirs_min), min(passive_min)
print(f"median step: safetune {o:.0f} ms, PyTorch eager as shipped {t:.0f} ms -> {t / o:.2f}x; "
      f"PyTorch eager with OMP_WAIT_POLICY=PASSIVE {tp:.0f} ms -> {tp / o:.2f}x")
print(f"fastest step: safetune {om:.0f} ms, PyTorch eager as shipped {tm:.0f} ms -> {tm / om:.2f}x; "
      f"with OMP_WAIT_POLICY=PASSIVE {tpm:.0f} ms -> {tpm / om:.2f}x (target >= 1.2x)")
print(f"safetune MFU (median step vs gemm measured beside it): median {statistics.median(mfu) * 100:.1f}% "
      f"(target >= 40%); gemm {min(gemm):.0f}-{max(gemm):.0f} GFLOP/s; {8 * 256 / (om / 1e3):.0f} tokens/s at best")
PY
