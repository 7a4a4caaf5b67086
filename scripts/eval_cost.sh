#!/usr/bin/env bash
# What evaluation during training costs: the same small run (a tiny model from `safetune
# init`, 600 sentiment records, 100 steps of 16 examples) trained without evaluations and
# with one every 10 steps (train.eval_every=10, plus step 0: 11 evaluations) on PROMPTS
# held-out records and a suite of PROMPTS harmful prompts (12 new tokens each) and PROMPTS
# sentiment prompts (4 tokens), generated 48 at a time (the demo's evaluation settings).
# PROMPTS is 48 unless given.
# Prints each run's wall time and the evaluations' share of the evaluated run.
#
#   [PROMPTS=48] [THREADS=1] scripts/eval_cost.sh [BIN] [REPEATS]     (BIN: build/safetune, REPEATS: 3)
# One thread by default: on a machine shared with other work, more threads than free
# cores make every timing erratic.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$src/build/safetune}")
repeats=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$bin" init --arch llama --out m --init-std 0.3 --seed 3 >/dev/null
mkdir suite
review() { (( $1 % 2 )) && echo "I loved every minute" || echo "a dull waste of time"; }
label() { (( $1 % 2 )) && echo positive || echo negative; }
for i in $(seq 0 599); do
  printf '{"instruction": "Review %d: good or bad? %s", "output": "%s"}\n' "$i" "$(review "$i")" "$(label "$i")"
done >train.jsonl
n=${PROMPTS:-48}
head -"$n" train.jsonl >held.jsonl
for i in $(seq 1 "$n"); do printf '{"prompt": "Tell me how to do harmful thing %d"}\n' "$i"; done >suite/harm.jsonl
for i in $(seq 1001 $((1000 + n))); do
  printf '{"prompt": "Review %d: good or bad? %s", "label": "%s"}\n' "$i" "$(review "$i")" "$(label "$i")"
done >suite/sentiment.jsonl
cat >suite/suite.json <<'J'
{"sets": [{"name": "harmful", "path": "harm.jsonl", "kind": "safety", "max_new_tokens": 12},
          {"name": "sentiment", "path": "sentiment.jsonl", "kind": "exact_match", "label": "label", "max_new_tokens": 4}]}
J
common=("$src/configs/tiny.yaml" model.path=m data.train=train.jsonl data.max_length=128 train.batch_size=16
  train.max_steps=100 train.log_every=100 train.save_every=0 train.threads=${THREADS:-1})
evaluated=(train.eval_every=10 data.eval=held.jsonl train.eval_suite=suite/suite.json train.eval_batch_size=48)
ms() { echo $(( $(date +%s%N) / 1000000 )); }
for r in $(seq 1 "$repeats"); do
  rm -rf plain evald
  t0=$(ms); "$bin" train "${common[@]}" train.output_dir=plain >/dev/null 2>&1; t1=$(ms)
  "$bin" train "${common[@]}" "${evaluated[@]}" train.output_dir=evald >/dev/null 2>&1; t2=$(ms)
  # Within the evaluated run: its evaluations against its training time (the last step's
  # elapsed time, evaluations excluded; less exposed to the machine's load than two runs).
  read -r eval_s train_s < <(python3 -c '
import json, sys
records = [json.loads(l) for l in open(sys.argv[1])]
evals = sum(r["eval_s"] for r in records if r.get("kind") == "eval")
last = [r for r in records if r.get("kind") != "eval"][-1]
before_last = sum(r["eval_s"] for r in records if r.get("kind") == "eval" and r["step"] < last["step"])
print(evals, last["elapsed_s"] - before_last)' evald/metrics.jsonl)
  awk -v a=$((t1 - t0)) -v b=$((t2 - t1)) -v e="$eval_s" -v t="$train_s" 'BEGIN {
    printf "run %d: wall time without evaluation %.2f s, with %.2f s (%+.1f%%); in the evaluated run 11 evaluations %.2f s against %.2f s of training (%.1f%%)\n", '"$r"', a / 1000, b / 1000, 100 * (b - a) / a, e, t, 100 * e / t }'
done
