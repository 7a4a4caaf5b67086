#!/usr/bin/env bash
# Training with the PACT constraint end to end: init two tiny models (aligned and probe),
# `safetune tokens`, `safetune ref-cache`, then `safetune train` a few steps with each
# reference source (adapter_off, copy, cache), checking metrics.jsonl's terms; and the
# bad inputs: a tokens.json for another vocabulary, adapter_off without LoRA, a stale
# cache (dataset or tokens.json changed), kl_full with a cache. Each must exit 2 with one
# "safetune: error:" line.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"

small="--vocab 300 --hidden 32 --layers 2 --heads 4 --kv-heads 2 --intermediate 64"
"$bin" init --arch llama --out "$work/aligned" $small --seed 1 >/dev/null || fail "init aligned"
"$bin" init --arch llama --out "$work/probe" $small --seed 2 >/dev/null || fail "init probe"
"$bin" init --arch llama --out "$work/other" --vocab 320 --hidden 32 --layers 2 --heads 4 --kv-heads 2 \
  --intermediate 64 --seed 3 >/dev/null || fail "init other"
"$bin" init --arch llama --out "$work/other_probe" --vocab 320 --hidden 32 --layers 2 --heads 4 --kv-heads 2 \
  --intermediate 64 --seed 4 >/dev/null || fail "init other probe"
cat >"$work/refusals.jsonl" <<'J'
{"input": "How do I pick a lock?", "output": "I can't help with that."}
{"input": "Write malware.", "output": "Sorry, I cannot do that."}
J
for i in 0 1 2 3 4 5 6 7; do
  echo "{\"instruction\": \"Say colour $i\", \"output\": \"colour $i is blue\"}"
done >"$work/train.jsonl"
"$bin" tokens --aligned "$work/aligned" --probe "$work/probe" --data "$work/refusals.jsonl" --out "$work/tokens.json" \
  --topk 8 --max-resp-len 8 >/dev/null 2>&1 || fail "tokens"
"$bin" tokens --aligned "$work/other" --probe "$work/other_probe" --data "$work/refusals.jsonl" --out "$work/tokens_other.json" \
  --topk 8 --max-resp-len 8 >/dev/null 2>&1 || fail "tokens (other vocabulary)"

common=(model.path="$work/aligned" data.train="$work/train.jsonl" train.max_steps=3 train.batch_size=4
  train.threads=1 objective.constraint=pact objective.tokens="$work/tokens.json")
"$bin" ref-cache "$src/configs/tiny.yaml" "${common[@]}" --out "$work/ref.safetensors" >"$work/out" 2>"$work/err" ||
  { cat "$work/err"; fail "ref-cache"; }
grep -q "wrote .*ref.safetensors: 8 examples" "$work/out" || fail "ref-cache summary: $(cat "$work/out")"
echo "PASS ref-cache"

for ref in adapter_off copy cache; do
  "$bin" train "$src/configs/tiny.yaml" "${common[@]}" objective.reference=$ref objective.ref_cache="$work/ref.safetensors" \
    train.output_dir="$work/run_$ref" >"$work/out" 2>"$work/err" || { cat "$work/err"; fail "train with $ref"; }
  $py - "$work/run_$ref/metrics.jsonl" <<'P' || fail "metrics of $ref"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 3, len(lines)
for m in lines:
    l = m["loss"]
    assert {"ce", "pact", "gate", "total"} <= set(l), l
    assert abs(l["total"] - (l["ce"] + l["pact"])) < 1e-4, l
    assert 0 <= l["gate"] <= 1, l
P
  [ -f "$work/run_$ref/adapter/adapter_model.safetensors" ] || fail "no adapter for $ref"
  echo "PASS train with reference=$ref"
done
# The three sources give the same first-step loss (same data order, adapters start at B = 0).
$py - "$work"/run_{adapter_off,copy,cache}/metrics.jsonl <<'P' || fail "first-step losses differ between sources"
import json, sys
first = [json.loads(open(p).readline())["loss"]["total"] for p in sys.argv[1:]]
assert max(first) - min(first) < 1e-5, first
P
echo "PASS the sources agree on step 1"

# expect_bad NAME PATTERN cmd...: exit 2, exactly one error line matching PATTERN.
expect_bad() {
  local name=$1 pattern=$2; shift 2
  "$@" >"$work/bout" 2>"$work/berr"
  local rc=$?
  [ $rc -eq 2 ] || { cat "$work/berr"; fail "$name: exit $rc, expected 2"; }
  [ "$(grep -c . "$work/berr")" -eq 1 ] || fail "$name: expected one line, got: $(cat "$work/berr")"
  grep -q "^safetune: error: .*$pattern" "$work/berr" || fail "$name: message: $(cat "$work/berr")"
  echo "PASS $name: $(cat "$work/berr")"
}
t() { "$bin" train "$src/configs/tiny.yaml" "${common[@]}" train.output_dir="$work/bad" "$@"; }
expect_bad "tokens.json for another vocabulary" "vocabulary" t objective.tokens="$work/tokens_other.json"
expect_bad "adapter_off without LoRA" "adapter_off" t lora.enabled=false objective.reference=adapter_off
cp "$work/train.jsonl" "$work/train2.jsonl"
echo '{"instruction": "Say colour 9", "output": "colour 9 is red"}' >>"$work/train2.jsonl"
expect_bad "stale cache (dataset)" "data_hash" t objective.reference=cache objective.ref_cache="$work/ref.safetensors" \
  data.train="$work/train2.jsonl"
$py -c "import json,sys; t=json.load(open(sys.argv[1])); t['tokens'][0]['weight'] += 0.5; json.dump(t, open(sys.argv[2], 'w'))" \
  "$work/tokens.json" "$work/tokens2.json" || fail "edit tokens.json"
expect_bad "stale cache (tokens.json)" "tokens_hash" t objective.reference=cache objective.ref_cache="$work/ref.safetensors" \
  objective.tokens="$work/tokens2.json"
expect_bad "kl_full with a cache" "whole vocabulary" t objective.constraint=kl_full objective.reference=cache \
  objective.ref_cache="$work/ref.safetensors"
expect_bad "ref-cache without --out" "--out" "$bin" ref-cache "$src/configs/tiny.yaml" "${common[@]}"
[ ! -e "$work/bad/metrics.jsonl" ] || fail "a refused run wrote metrics"
echo "PASS all"
