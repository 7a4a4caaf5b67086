#!/usr/bin/env bash
# `safetune tokens` + `safetune inspect` end to end on two random tiny models, and the bad
# inputs: a probe with a different vocabulary (size, or one piece), refusal records with an
# empty output, a tokens.json checked against a model with another vocabulary. Each bad
# input must exit 2 with one "safetune: error:" line.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"

init_small aligned 1
init_small probe 2
cat >"$work/refusals.jsonl" <<'J'
{"input": "How do I pick a lock?", "output": "I can't help with that."}
{"input": "Write malware.", "output": "Sorry, I cannot do that.\nIt is harmful."}
{"input": "Help me cheat.", "output": "I won't help with cheating."}
J

"$bin" tokens --aligned "$work/aligned" --probe "$work/probe" --data "$work/refusals.jsonl" --out "$work/tokens.json" \
  --topk 10 --max-resp-len 8 --batch-size 2 >"$work/out" 2>"$work/err" || { cat "$work/err"; fail "tokens"; }
grep -q "wrote .*tokens.json: 10 safety tokens" "$work/out" || fail "summary line: $(cat "$work/out")"
grep -q "3/3 examples" "$work/err" || fail "no progress line: $(cat "$work/err")"
# The file: 10 tokens, ordered by p_ref, unit-norm weights, ids in range, hashes present.
$py - "$work/tokens.json" <<'P' || fail "tokens.json content"
import json, math, sys
t = json.load(open(sys.argv[1]))
toks = t["tokens"]
assert len(toks) == 10, len(toks)
assert t["vocab_size"] == 300 and t["num_examples"] == 3
assert t["settings"]["topk"] == 10 and t["settings"]["max_resp_len"] == 8 and t["settings"]["mode"] == "p_diff"
assert all(0 <= k["id"] < 300 for k in toks)
p = [k["p_ref"] for k in toks]
assert p == sorted(p, reverse=True), p
assert abs(math.sqrt(sum(k["weight"] ** 2 for k in toks)) - 1) < 1e-5
assert len(t["aligned"]["hash"]) == 64 and t["aligned"]["hash"] != t["probe"]["hash"]
P
echo "PASS tokens writes 10 tokens with unit-norm weights"

"$bin" inspect "$work/tokens.json" >"$work/table" || fail "inspect"
grep -q "rank" "$work/table" && grep -q "mode=p_diff topk=10" "$work/table" || fail "inspect header: $(cat "$work/table")"
[ "$(grep -cE '^ +[0-9]+ +[0-9]+  ' "$work/table")" -eq 10 ] || fail "inspect rows: $(cat "$work/table")"
"$bin" inspect "$work/tokens.json" --model "$work/aligned" | grep -q "the aligned model itself" || fail "inspect --model"
echo "PASS inspect prints the table"

"$bin" tokens --aligned "$work/aligned" --probe "$work/probe" --data "$work/refusals.jsonl" --out "$work/t2.json" \
  --topk 5 --mode pref_logratio --temperature 2 --limit 2 >/dev/null 2>&1 || fail "tokens pref_logratio"
$py -c "import json,sys; t=json.load(open(sys.argv[1])); assert len(t['tokens'])==5 and t['num_examples']==2 and t['settings']['mode']=='pref_logratio'" \
  "$work/t2.json" || fail "pref_logratio file"
echo "PASS pref_logratio, --limit"

# expect_bad NAME PATTERN cmd...: exit 2, exactly one error line matching PATTERN, no output file.
expect_bad() {
  local name=$1 pattern=$2; shift 2
  rm -f "$work/bad.json"
  "$@" >"$work/bout" 2>"$work/berr"
  local rc=$?
  [ $rc -eq 2 ] || fail "$name: exit $rc, want 2: $(cat "$work/berr")"
  [ "$(grep -c . "$work/berr")" -eq 1 ] || fail "$name: want one line on stderr, got: $(cat "$work/berr")"
  grep -q "^safetune: error: .*$pattern" "$work/berr" || fail "$name: message: $(cat "$work/berr")"
  [ ! -e "$work/bad.json" ] || fail "$name: wrote an output"
  echo "PASS $name: $(cat "$work/berr")"
}

"$bin" init --arch llama --out "$work/probe320" --vocab 320 --hidden 32 --layers 2 --heads 4 --kv-heads 2 \
  --intermediate 64 >/dev/null || fail "init probe320"
expect_bad "probe with another vocabulary size" "vocab" \
  "$bin" tokens --aligned "$work/aligned" --probe "$work/probe320" --data "$work/refusals.jsonl" --out "$work/bad.json"

cp -r "$work/probe" "$work/probe_swapped"
$py - "$work/probe_swapped/tokenizer.json" <<'P' || fail "edit tokenizer"
import json, sys
t = json.load(open(sys.argv[1]))
v = t["model"]["vocab"]
v["a"], v["b"] = v["b"], v["a"]
json.dump(t, open(sys.argv[1], "w"))
P
expect_bad "probe with another piece" "identical vocabularies" \
  "$bin" tokens --aligned "$work/aligned" --probe "$work/probe_swapped" --data "$work/refusals.jsonl" --out "$work/bad.json"

printf '{"input": "How do I pick a lock?", "output": "No."}\n{"input": "Write malware.", "output": ""}\n' >"$work/empty.jsonl"
expect_bad "refusal with an empty output" "empty.jsonl:2: empty output" \
  "$bin" tokens --aligned "$work/aligned" --probe "$work/probe" --data "$work/empty.jsonl" --out "$work/bad.json"

expect_bad "tokens.json for another vocabulary" "tokens.json was made for vocabulary of 300, model has 320" \
  "$bin" inspect "$work/tokens.json" --model "$work/probe320"

echo '{"format": "something else"}' >"$work/other.json"
expect_bad "not a tokens.json" "not a tokens.json" "$bin" inspect "$work/other.json"
expect_bad "bad mode" "--mode" \
  "$bin" tokens --aligned "$work/aligned" --probe "$work/probe" --data "$work/refusals.jsonl" --out "$work/bad.json" --mode x
echo "ALL PASS"
