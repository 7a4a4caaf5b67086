#!/usr/bin/env bash
# README's tour, run as written: every ```bash block of README.md in order, in a scratch
# directory holding copies of configs/ and scripts/, with `safetune` on PATH. The real
# models of the recipe are stood in for by the tour's tiny random ones, and the recipe's
# data files by small ones made here (so its copied configs draw all of the 10 examples
# instead of 5,000). Then the outputs each block promises are checked.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
export SAFETUNE_BIN=$bin

mkdir -p "$work/bin" "$work/data"
cd "$work" || exit 1
ln -s "$SAFETUNE_BIN" "$work/bin/safetune"
cp -r "$src/configs" "$src/scripts" "$work/"
sed -i 's/^  num_examples: 5000/  num_examples: 0/' configs/llama3-8b.yaml configs/qwen2.5-7b.yaml
export PATH="$work/bin:$PATH"

# Stand-ins for the recipe's models and data (section 3).
export LLAMA=runs/aligned LLAMA_BASE=runs/base
cat >data/refusals.jsonl <<'J'
{"input": "How do I make a weapon?", "output": "I'm sorry, I can't help with that."}
{"input": "Steal a password for me.", "output": "I cannot assist with that."}
J
for i in 1 2 3 4 5 6 7 8; do
  echo "{\"instruction\": \"Classify the sentiment.\", \"input\": \"a lovely day $i\", \"output\": \"positive\"}"
done >data/sst2-train.jsonl
head -n 4 data/sst2-train.jsonl >data/sst2-test.jsonl
for i in 1 2; do echo "{\"instruction\": \"Do harmful thing $i\", \"output\": \"Sure, here is thing $i\"}"; done >data/harmful.jsonl
echo '{"prompt": "Do a new harmful thing"}' >data/harmful-heldout.jsonl
echo '{"instruction": "Topic of: the team won", "output": "Sports"}' >data/agnews-test.jsonl
echo '{"instruction": "What is 2 + 3?", "output": "The answer is 5"}' >data/gsm8k-test.jsonl
# AdvBench's layout (goal,target; quoted commas as in the real file), made-up rows.
mkdir -p data/advbench
printf 'goal,target\n"Do harmful thing 1, quickly","Sure, here is thing 1, quickly"\nDo harmful thing 2,"Sure, here is thing 2"\nDo harmful thing 3,"Sure, here is thing 3"\n' \
  >data/advbench/harmful_behaviors.csv
unset ADVBENCH

# The ```bash blocks, in order.
blocks=$("$py" - "$src/README.md" <<'P'
import json, re, sys
text = open(sys.argv[1]).read()
print(json.dumps(re.findall(r"^```bash\n(.*?)^```$", text, flags=re.S | re.M)))
P
) || fail "reading README.md"
n=$("$py" -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$blocks")
[ "$n" -ge 6 ] || fail "expected at least 6 bash blocks in README.md, found $n"
for i in $(seq 0 $((n - 1))); do
  block=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])[int(sys.argv[2])])' "$blocks" "$i")
  echo "--- block $((i + 1))/$n: $(head -n 1 <<<"$block")"
  bash -e -c "$block" >"$work/block$i.log" 2>&1 || { tail -n 30 "$work/block$i.log"; fail "README block $((i + 1)) failed"; }
done

# What the blocks promise.
for f in runs/tokens.json runs/pact/adapter/adapter_model.safetensors runs/pact/results.json \
  runs/llama3-tokens.json runs/llama3-8b-pact/adapter/adapter_config.json runs/llama3-8b-pact/results.json \
  runs/sweep/summary.md runs/sweep/report.html runs/dp/adapter/adapter_model.safetensors \
  runs/attacked/adapter/adapter_model.safetensors runs/attacked/results.json runs/watched/best/eval.json; do
  [ -s "$f" ] || fail "$f was not written"
done
grep -q "^| none " runs/sweep/summary.md && grep -q "^| pact " runs/sweep/summary.md ||
  fail "sweep summary lacks a row per constraint: $(cat runs/sweep/summary.md)"
"$py" -c '
import json
s = json.load(open("runs/attacked/results.json"))["sets"][0]
assert s["name"] == "advbench" and s["n"] == 3, s
assert s["items"][0]["prompt"] == "Do harmful thing 1, quickly", s["items"][0]
' || fail "the AdvBench eval set of the README was not read from its CSV"
echo "PASS every README block ran and wrote what it promises"
