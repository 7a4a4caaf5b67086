#!/usr/bin/env bash
# Data-parallel benchmark on this machine:
#  1. training step time on the same global batch: 1 process with all cores, 1 process
#     with 1 thread, and N processes sharing the cores (train.threads=0 divides them by
#     LOCAL_WORLD_SIZE); LoRA, and full fine-tuning, whose all-reduce carries every weight's
#     gradient (44 MB for the 11M-parameter model used here). Times come from rank 0's
#     metrics.jsonl: elapsed time from step 2 to the last, per step;
#  2. the all-reduce bandwidth c10d Gloo reaches between local processes (loopback TCP).
# Usage: scripts/bench_dist.sh [N=2] [STEPS=8]     (SAFETUNE_BIN = the binary to use)
# On a machine with fewer cores than processes x threads, the processes compete: the
# numbers say what data parallelism costs or gains here, not on a real cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
bin=${SAFETUNE_BIN:-$src/build/safetune}
export SAFETUNE_BIN=$bin
n=${1:-2}
steps=${2:-8}
py=${SAFETUNE_PYTHON:-$src/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cores=$(nproc)

# 11M parameters: d=384, 6 layers, MLP 1024, vocab 512.
"$bin" init --arch llama --out "$work/model" --seed 1 --hidden 384 --layers 6 --heads 6 --kv-heads 6 \
  --intermediate 1024 >/dev/null
for i in $(seq 0 255); do
  printf '{"instruction": "Describe item %d in a few words, please", "output": "item %d is a small thing that does %d things well"}\n' \
    "$i" "$i" "$((i % 7))"
done >"$work/train.jsonl"
base=("$src/configs/tiny.yaml" model.path="$work/model" data.train="$work/train.jsonl" train.batch_size=4
  train.grad_accum="$n" train.max_steps="$steps" train.save_every=0 train.log_every=1 data.max_length=64)

# ms per step from a run's metrics.jsonl: step 2 to the last (the first warms up).
step_ms() {
  $py - "$1/metrics.jsonl" <<'P'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
a, b = m[1], m[-1]
print(f"{1e3 * (b['elapsed_s'] - a['elapsed_s']) / (b['step'] - a['step']):.1f}")
P
}

echo "machine: $cores cores (load average $(cut -d' ' -f1 /proc/loadavg)); global batch 4 x $n examples x 64 tokens per step"
printf '%-6s %22s %22s %22s\n' "mode" "1 process, $cores threads" "1 process, 1 thread" "$n processes"
for mode in lora full; do
  extra=()
  [ "$mode" = full ] && extra=(lora.enabled=false optim.lr=1e-4)
  run() {  # NAME THREADS COMMAND... : one run; prints its ms per step
    local name=$1 threads=$2; shift 2
    "$@" "${base[@]}" "${extra[@]}" train.threads="$threads" train.output_dir="$work/${mode}_$name" >"$work/${mode}_$name.log" 2>&1 ||
      { cat "$work/${mode}_$name.log" >&2; exit 1; }
    step_ms "$work/${mode}_$name"
  }
  all=$(run all 0 "$bin" train)
  one=$(run one 1 "$bin" train)
  dp=$(run dp 0 "$here/launch.sh" -n "$n")
  printf '%-6s %19s ms %19s ms %19s ms\n' "$mode" "$all" "$one" "$dp"
done
# The trainer's first log line: the BLAS library and kernel set these steps ran on.
grep -m1 -o 'blas: .*' "$work/full_all.log" || echo "blas: not reported"

echo
echo "Gloo all-reduce between $n local processes (loopback TCP):"
for mb in 1 16 64; do
  "$here/launch.sh" -n "$n" -- "$bin" bench allreduce --mb "$mb" --iters 10 | grep '^\[rank 0\]' | sed 's/^\[rank 0\] //'
done
