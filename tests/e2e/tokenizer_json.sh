#!/usr/bin/env bash
# tokenizer.json against Hugging Face `tokenizers` (the library transformers uses; from the
# project's python, tests/reference/tokenize_ref.py) on the real published tokenizer.json
# files of GPT-2, Llama-2, Llama-3, Qwen3 and Gemma 3 ($SAFETUNE_TOKENIZERS_DIR, else
# ../shared/data/tokenizers next to the sources; gzip'd, unpacked into the scratch dir).
# Every text of tests/reference/tricky_texts.json (emoji, CJK, accents, digit runs,
# contractions, whitespace runs, newlines, special tokens) must give identical ids;
# decoding our ids must give the text back (NFC-normalized for Qwen3, whose normalizer is
# NFC) and the library's decode of the same ids. Then 400 random concatenations of the
# same kinds of pieces (tests/reference/random_texts.json).
# Skips (77), loudly, only when the tokenizer files are absent.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
ref=$src/tests/reference
need_py_modules tokenizers

models=(qwen3 gpt2 llama3 llama2 gemma3)
for model in "${models[@]}"; do
  if ! [ -f "$tokenizers_dir/$model/tokenizer.json.gz" ]; then
    echo "SKIP: ***** the published tokenizer files are absent: no $tokenizers_dir/$model/tokenizer.json.gz" \
      "(set SAFETUNE_TOKENIZERS_DIR to the folder of qwen3/ gpt2/ llama3/ llama2/ gemma3/) *****"
    exit 77
  fi
  mkdir -p "$work/$model"
  gzip -dc "$tokenizers_dir/$model/tokenizer.json.gz" >"$work/$model/tokenizer.json"
  cp "$tokenizers_dir/$model/tokenizer_config.json" "$work/$model/"
done

status=0
for texts in "$ref/tricky_texts.json" "$ref/random_texts.json"; do
for model in "${models[@]}"; do
  "$py" "$ref/tokenize_ref.py" encode "$work/$model" "$texts" >"$work/$model.ref.jsonl"
  "$bin" tokenize --model "$work/$model" --batch "$texts" >"$work/$model.ours.jsonl"
  "$py" - "$model" "$texts" "$work/$model.ref.jsonl" "$work/$model.ours.jsonl" <<'PY' || status=1
import json, sys, unicodedata
model, texts, ref, ours = sys.argv[1:]
texts = json.load(open(texts, encoding="utf-8"))
ref = [json.loads(l) for l in open(ref, encoding="utf-8")]
ours = [json.loads(l) for l in open(ours, encoding="utf-8")]
assert len(ref) == len(texts) == len(ours), (len(ref), len(texts), len(ours))
assert any(r["ids"] for r in ref), "the reference gave no ids at all"
same_ids = same_decode = 0
bad = 0
for t, r, o in zip(texts, ref, ours):
    if o["ids"] == r["ids"]:
        same_ids += 1
    else:
        bad += 1
        print(f"{model}: ids differ for {t!r}\n  safetune:  {o['ids']}\n  reference: {r['ids']}")
    if o["decoded"] == r["decoded"]:
        same_decode += 1
    else:
        bad += 1
        print(f"{model}: decode differs for {t!r}\n  safetune:  {o['decoded']!r}\n  reference: {r['decoded']!r}")
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
n = sum(len(r["ids"]) for r in ref)
verdict = "PASS" if bad == 0 else "FAIL"
print(f"{verdict} {model}: ids identical for {same_ids}/{len(texts)} texts ({n} reference ids), "
      f"decode identical for {same_decode}/{len(texts)}, {sys.argv[2].split('/')[-1]}")
sys.exit(1 if bad else 0)
PY
done
done
[ $status -eq 0 ] || { echo "tokenizer.json vs Hugging Face tokenizers: FAILED"; exit 1; }
echo "tokenizer.json vs Hugging Face tokenizers: identical ids for all five families"
