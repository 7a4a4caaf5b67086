#!/usr/bin/env bash
# safetune's PACT step against the reference implementation's design written with
# transformers + peft (scripts/pact_reference_step.py: a second full copy of the model as
# the reference, two full-vocabulary fp32 reference passes per step, full context and
# post-only, then the |S| columns sliced), on the same torch, the same model, batch and
# threads, alternated ROUNDS times in one run.
#
# The model: a ~54M-parameter Llama shape (hidden 512, 12 layers of 8 heads, MLP 1376,
# vocab 32000, tied embeddings) made by `safetune init`; LoRA r 8 / alpha 32 / dropout 0.05
# on q_proj and v_proj; faithful pact (T 2, the gate, lambda 1) with 50 safety tokens
# from `safetune tokens`; batch 4 x 256 tokens, the first 128 a prompt. safetune runs its
# default reference (adapter_off: the same weights with the adapters off), the reference's
# own design (copy: a second full copy), and the cached reference (cache: the reference's
# S logits precomputed once for a fixed dataset, `safetune ref-cache`; served here from
# memory for the benchmark's batch, as a cache file serves them).
# Reported: median step times, their ratios (reference design / safetune), and peak RSS
# ratios (safetune / reference design). Targets: >= 2x faster, <= 60% of the memory.
#
#   scripts/bench_pact_reference.sh [ROUNDS=3] [STEPS=5]
# Environment: SAFETUNE_BIN (default build/safetune), THREADS (default: all cores),
# BATCH (4), SEQ (256), PROMPT (SEQ / 2).
set -euo pipefail
. "$(dirname "$0")/lib/bench.sh"
bench_common "${1:-3}" "${2:-5}"
batch=${BATCH:-4}
seq=${SEQ:-256}
prompt=${PROMPT:-$((seq / 2))}
pact_setup "$work" --vocab 32000 --hidden 512 --layers 12 --heads 8 --kv-heads 8 --intermediate 1376 --max-pos 2048 --tie
modes=(adapter_off copy cache reference)
declare -A med rss
for m in "${modes[@]}"; do med[$m]="" rss[$m]=""; done
for ((i = 1; i <= rounds; i++)); do
  for m in "${modes[@]}"; do
    if [ "$m" = reference ]; then
      s=$($py "$src/scripts/pact_reference_step.py" --model "$work/model" --tokens "$work/tokens.json" --batch "$batch" \
        --seq "$seq" --prompt "$prompt" --steps "$steps" --warmup 1 --threads "$threads")
    else
      s=$("$bin" bench step --config "$src/configs/tiny.yaml" model.path="$work/model" data.train="$work/data.jsonl" \
        train.output_dir="$work/run" lora.enabled=true lora.r=8 lora.alpha=32 lora.dropout=0.05 \
        "lora.target_modules=[q_proj,v_proj]" train.batch_size="$batch" data.max_length="$seq" train.grad_accum=1 \
        train.threads="$threads" objective.constraint=pact objective.tokens="$work/tokens.json" \
        objective.reference="$m" objective.ref_cache="$work/unused.safetensors" --prompt "$prompt" --steps "$steps" --warmup 1 --json)
      last=$s
    fi
    med[$m]+=" $(get "$s" step_ms)" rss[$m]+=" $(get "$s" peak_rss_mb)"
    echo "round $i $m: $s"
  done
done
$py - "${med[adapter_off]}" "${rss[adapter_off]}" "${med[copy]}" "${rss[copy]}" "${med[cache]}" "${rss[cache]}" \
  "${med[reference]}" "${rss[reference]}" "$batch" "$seq" "$prompt" <<'PY'
import statistics, sys
v = [[float(x) for x in a.split()] for a in sys.argv[1:9]]
ref_t, ref_m = statistics.median(v[6]), max(v[7])
print(f"batch {sys.argv[9]} x {sys.argv[10]} tokens, prompt {sys.argv[11]}")
print(f"reference design (transformers + peft): median step {ref_t:.0f} ms, peak RSS {ref_m:.0f} MB")
for i, n in enumerate(["adapter_off", "copy", "cache"]):
    t, m = statistics.median(v[2 * i]), max(v[2 * i + 1])
    per_round = [r / s for r, s in zip(v[6], v[2 * i])]
    print(f"safetune pact/{n}: median step {t:.0f} ms ({ref_t / t:.2f}x faster; per round "
          f"{' '.join(f'{x:.2f}' for x in per_round)}), peak RSS {m:.0f} MB ({100 * m / ref_m:.0f}% of the "
          f"reference design)  targets: >= 2x faster, <= 60%")
PY
blas_line "$last"
