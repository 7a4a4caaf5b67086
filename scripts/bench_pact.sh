#!/usr/bin/env bash
# Cost of the PACT constraint per training step, for each reference source.
#
# A ~25M-parameter Llama-shaped model (hidden 512, 8 layers of 8 heads, MLP 1376, vocab
# 32000, tied embeddings) made by `safetune init`, LoRA r 8 on q_proj/v_proj, batch
# 8 x 256 tokens. `safetune bench step` times the training step with objective.constraint
# none, then pact with reference adapter_off, copy and cache, alternately, ROUNDS times
# each in one invocation (so that machine load hits all alike). Its synthetic batch is
# PROMPT untrained prompt tokens (default: half the row) followed by the trained
# response; pact's post-only context is a 4-token header followed by the response
# (PROMPT=0: every position after the first is trained and the post-only context is as
# long as the full one, the worst case for the reference passes); reference=cache serves rows
# precomputed for that batch from memory, as a cache file does. tokens.json comes from
# `safetune tokens` with a second random model as the probe (50 tokens).
# Reported: the ratio of median step times pact/none (and of the fastest steps, which
# load from other processes can only lengthen), the same ratios per round (each source
# against the none run of its round) with their median, and the peak RSS of adapter_off
# over none, and the BLAS kernel set the steps ran on.
# Targets: cache <= 1.10x, adapter_off <= 1.45x, copy <= 1.60x; RSS adapter_off <= 1.05x.
#
#   scripts/bench_pact.sh [ROUNDS=3] [STEPS=5]
# Environment: SAFETUNE_BIN (default build/safetune), THREADS (default: all cores),
# BATCH (8), SEQ (256), PROMPT (SEQ / 2).
set -euo pipefail
. "$(dirname "$0")/lib/bench.sh"
bench_common "${1:-3}" "${2:-5}"
batch=${BATCH:-8}
seq=${SEQ:-256}
prompt=${PROMPT:-$((seq / 2))}
pact_setup "$work" --vocab 32000 --hidden 512 --layers 8 --heads 8 --kv-heads 8 --intermediate 1376 --max-pos 2048 --tie
modes=(none adapter_off copy cache)
declare -A med fast rss
for m in "${modes[@]}"; do med[$m]="" fast[$m]="" rss[$m]=""; done
for ((i = 1; i <= rounds; i++)); do
  for m in "${modes[@]}"; do
    if [ "$m" = none ]; then obj=(objective.constraint=none)
    else obj=(objective.constraint=pact objective.tokens="$work/tokens.json" objective.reference="$m"
      objective.ref_cache="$work/unused.safetensors"); fi
    s=$("$bin" bench step --config "$src/configs/tiny.yaml" model.path="$work/model" data.train="$work/data.jsonl" \
      train.output_dir="$work/run" lora.enabled=true lora.r=8 lora.alpha=32 lora.dropout=0.05 \
      "lora.target_modules=[q_proj,v_proj]" train.batch_size="$batch" data.max_length="$seq" train.grad_accum=1 \
      train.threads="$threads" "${obj[@]}" --prompt "$prompt" --steps "$steps" --warmup 1 --json)
    med[$m]+=" $(get "$s" step_ms)" fast[$m]+=" $(get "$s" step_ms_min)" rss[$m]+=" $(get "$s" peak_rss_mb)"
    echo "round $i $m: $s"
  done
done
$py - "${med[none]}" "${fast[none]}" "${rss[none]}" \
  "${med[adapter_off]}" "${fast[adapter_off]}" "${rss[adapter_off]}" \
  "${med[copy]}" "${fast[copy]}" "${rss[copy]}" \
  "${med[cache]}" "${fast[cache]}" "${rss[cache]}" "$batch" "$seq" "$prompt" <<'PY'
import statistics, sys
v = [[float(x) for x in a.split()] for a in sys.argv[1:13]]
names = ["none", "adapter_off", "copy", "cache"]
d = {n: (statistics.median(v[3 * i]), min(v[3 * i + 1]), max(v[3 * i + 2])) for i, n in enumerate(names)}
targets = {"adapter_off": 1.45, "copy": 1.60, "cache": 1.10}
n_med, n_fast, n_rss = d["none"]
print(f"batch {sys.argv[13]} x {sys.argv[14]} tokens, prompt {sys.argv[15]}")
print(f"none: median step {n_med:.0f} ms, fastest {n_fast:.0f} ms, peak RSS {n_rss:.0f} MB")
for n in ["cache", "adapter_off", "copy"]:
    m, f, r = d[n]
    print(f"pact/{n}: median step {m:.0f} ms ({m / n_med:.2f}x of none), fastest {f:.0f} ms ({f / n_fast:.2f}x), "
          f"peak RSS {r:.0f} MB ({r / n_rss:.3f}x)  target <= {targets[n]:.2f}x")
# Per round, each source against the none run just before it (adjacent in time, so slow
# drifts in machine load cancel), then the median over rounds.
rounds = len(v[0])
for i, n in enumerate(names[1:], start=1):
    r_med = [v[3 * i][k] / v[0][k] for k in range(rounds)]
    r_fast = [v[3 * i + 1][k] / v[1][k] for k in range(rounds)]
    print(f"pact/{n} per-round ratio to none: median-step {statistics.median(r_med):.2f}x "
          f"(rounds: {' '.join(f'{x:.2f}' for x in r_med)}), fastest-step {statistics.median(r_fast):.2f}x")
print(f"peak RSS adapter_off / none: {d['adapter_off'][2] / n_rss:.3f}x (target <= 1.05x)")
PY
blas_line "$s"
