#!/usr/bin/env bash
# `safetune tokenize` on a tiny handmade byte-level tokenizer.json: ids and pieces, JSON
# output, dataset token counts, and bad input (malformed tokenizer.json, an unknown
# pre-tokenizer or model type, invalid UTF-8 in --file): one-line errors, exit code 2.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

# A byte-level tokenizer: ids 0..255 are the bytes (GPT-2's byte-to-unicode table), then
# merges h+e -> 256, l+l -> 257, ll+o -> 258, he+llo -> 259; one special token at 300.
mk() {  # mk DIR PRE_TOKENIZER_TYPE MODEL_TYPE
  mkdir -p "$1"
  "$py" - "$1/tokenizer.json" "$2" "$3" <<'PY'
import json, sys
path, pre, model_type = sys.argv[1:]
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
char = dict(zip(bs, map(chr, cs)))
vocab = {char[b]: b for b in range(256)}
merges = [("h", "e"), ("l", "l"), ("ll", "o"), ("he", "llo")]
for a, b in merges:
    vocab.setdefault(a + b, len(vocab))
json.dump({"added_tokens": [{"id": 300, "content": "<|end|>", "special": True}],
           "normalizer": None,
           "pre_tokenizer": {"type": pre, "add_prefix_space": False, "use_regex": True},
           "decoder": {"type": "ByteLevel"},
           "model": {"type": model_type, "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]}},
          open(path, "w"))
PY
}
mk "$work/tok" ByteLevel BPE

out=$("$bin" tokenize --model "$work/tok" --text "hello hello<|end|>" --json)
[ "$out" = '{"ids":[259,32,259,300]}' ] || fail "json ids: $out"
out=$("$bin" tokenize --model "$work/tok" --text "hello <|end|>")
echo "$out" | grep -q '^ids (3): 259 32 300$' || fail "ids line: $out"
echo "$out" | grep -q '^pieces: \["hello","Ġ","<|end|>"\]$' || fail "pieces line: $out"

# Dataset counts: 3 records, string fields joined by newlines.
printf '%s\n' '{"instruction": "hello", "output": "hello"}' '' '{"prompt": "he", "completion": "llo"}' \
  '{"messages": [{"role": "user", "content": "hello"}]}' >"$work/data.jsonl"
out=$("$bin" tokenize --model "$work/tok" --file "$work/data.jsonl" --json)
# record 1: hello \n hello -> 3; record 2: he \n llo -> 3; record 3: user \n hello -> 6
[ "$out" = '{"max":6,"mean":4.0,"records":3,"tokens":12}' ] || fail "dataset counts: $out"

expect_error() {  # expect_error PATTERN CMD...
  local pattern=$1; shift
  set +e; err=$("$@" 2>&1 >/dev/null); rc=$?; set -e
  [ $rc -eq 2 ] || fail "exit $rc (want 2) for: $* -> $err"
  [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "multi-line error: $err"
  echo "$err" | grep -qF -- "$pattern" || fail "error '$err' lacks '$pattern'"
}
printf 'good line\nbad \xff byte\n' >"$work/bad.txt"
expect_error "$work/bad.txt:2: invalid UTF-8" "$bin" tokenize --model "$work/tok" --file "$work/bad.txt"
printf '{"text": "ok"}\n{"text": "\xc3("}\n' >"$work/bad.jsonl"
expect_error "$work/bad.jsonl:2: invalid UTF-8" "$bin" tokenize --model "$work/tok" --file "$work/bad.jsonl"
mkdir -p "$work/malformed"; echo '{"model": {"type": "BPE", ' >"$work/malformed/tokenizer.json"
expect_error "$work/malformed/tokenizer.json: malformed JSON" "$bin" tokenize --model "$work/malformed" --text hi
mk "$work/pre" BertPreTokenizer BPE
expect_error "unsupported pre_tokenizer 'BertPreTokenizer'" "$bin" tokenize --model "$work/pre" --text hi
expect_error "$work/pre/tokenizer.json" "$bin" tokenize --model "$work/pre" --text hi
mk "$work/wp" ByteLevel WordPiece
expect_error "unsupported tokenizer model type 'WordPiece'" "$bin" tokenize --model "$work/wp" --text hi
expect_error "no tokenizer.json or tokenizer.model" "$bin" tokenize --model "$work" --text hi
echo "tokenize CLI: ok"
