#!/usr/bin/env bash
# What passive OpenMP waiting (src/cli/runtime_env.cpp) does to training steps: `safetune
# bench step` with safetune's default (OMP_WAIT_POLICY=PASSIVE) against libgomp's own
# (SAFETUNE_OMP_WAIT_POLICY=keep: idle workers spin), alternated ROUNDS times in one run,
# in two situations:
#   alone   one process with THREADS threads (default: all cores);
#   shared  two such processes at once, as two data-parallel ranks or the demo's worlds
#           side by side on one machine (the step time is the mean of the two).
# The model is bench_train.sh's ~25M-parameter Llama (LoRA off, batch 4 x 256).
#   scripts/bench_wait_policy.sh [ROUNDS=3] [STEPS=4]
# Uses build/safetune (or $SAFETUNE_BIN).
set -euo pipefail
. "$(dirname "$0")/lib/bench.sh"
bench_common "${1:-3}" "${2:-4}"

"$bin" init --arch llama --out "$work/model" --vocab 32000 --hidden 512 --layers 8 --heads 8 --kv-heads 8 \
  --intermediate 1376 --max-pos 2048 --tie --seed 0 >/dev/null
echo '{"instruction": "unused", "output": "unused"}' >"$work/data.jsonl"
step() {  # env assignments...: one `bench step` JSON line
  env "$@" "$bin" bench step --config "$src/configs/tiny.yaml" model.path="$work/model" data.train="$work/data.jsonl" \
    train.output_dir="$work/run" lora.enabled=false train.batch_size=4 data.max_length=256 train.grad_accum=1 \
    train.threads="$threads" --steps "$steps" --warmup 1 --gemm-gflops 1 --json
}
shared() {  # env assignments...: the mean step of two processes started together
  step "$@" >"$work/a" &
  step "$@" >"$work/b"
  wait
  "$py" -c 'import json, sys; print("%.1f" % (sum(json.load(open(f))["step_ms"] for f in sys.argv[1:]) / 2))' \
    "$work/a" "$work/b"
}
declare -A ms
for ((i = 1; i <= rounds; i++)); do
  for policy in passive spin; do
    envs=(-u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)
    [ "$policy" = spin ] && envs+=(SAFETUNE_OMP_WAIT_POLICY=keep)
    s=$(step "${envs[@]}")
    ms[alone_$policy]+=" $(get "$s" step_ms)"
    ms[shared_$policy]+=" $(shared "${envs[@]}")"
  done
  echo "round $i (step ms): alone passive ${ms[alone_passive]##* }, spinning ${ms[alone_spin]##* };" \
    "shared passive ${ms[shared_passive]##* }, spinning ${ms[shared_spin]##* }"
done
echo "$(blas_line "$s"); CPU: $(lscpu | sed -n 's/^Model name: *//p'), $threads threads per process"
"$py" - "${ms[alone_passive]}" "${ms[alone_spin]}" "${ms[shared_passive]}" "${ms[shared_spin]}" <<'PY'
import statistics, sys
ap, asp, sp, ssp = (statistics.median(float(x) for x in a.split()) for a in sys.argv[1:5])
print(f"alone:  median step passive {ap:.0f} ms, spinning {asp:.0f} ms -> passive is {asp / ap:.2f}x the speed")
print(f"shared: median step passive {sp:.0f} ms, spinning {ssp:.0f} ms -> passive is {ssp / sp:.2f}x the speed")
PY
