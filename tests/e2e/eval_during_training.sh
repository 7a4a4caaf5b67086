#!/usr/bin/env bash
# Evaluation during training (train.eval_every) on a tiny model:
#  - each evaluation's refusal, attack success and accuracy equal, exactly, those of
#    `safetune eval` on the checkpoint of the same step with the same batch size;
#  - run_dir/best holds the weights of the evaluation with the best train.keep_best score
#    (the checkpoint of that step's adapter, byte for byte) and its eval.json;
#  - `safetune summarize` shows the last evaluation's metrics;
#  - evaluating changes nothing in the training: with dropout on, the final adapter and
#    the step records' losses equal those of the same run without evaluations;
#  - train.early_stop stops the run at the first evaluation that crosses its bound, with a
#    message naming the metric and the bound, writes the final adapter, and a resume of the
#    stopped run trains nothing more.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
[ -x "$py" ] || { echo "SKIP: $py not found"; exit 77; }
. "$(dirname "$0")/lib/eval_world.sh"
cd "$work" || exit 1

"$bin" train "${eval_args[@]}" train.output_dir=run train.max_steps=60 train.eval_every=10 train.save_every=10 \
  train.keep_best=refusal+utility:max >train.log 2>&1 || { cat train.log; fail "train"; }
grep -q "eval at step 60: val_ce" train.log || fail "no evaluation line: $(tail -5 train.log)"
for s in 10 20 30 40 50 60; do
  "$bin" eval --adapter "run/checkpoints/step-$(printf %08d $s)" --suite suite/suite.json --batch-size 4 \
    --out "eval_$s.json" >/dev/null 2>eval.err || { cat eval.err; fail "safetune eval at step $s"; }
done
"$py" - <<'PY' || fail "evaluation records"
import json
records = [json.loads(l) for l in open("run/metrics.jsonl")]
evals = [r for r in records if r.get("kind") == "eval"]
assert [r["step"] for r in evals] == [0, 10, 20, 30, 40, 50, 60], [r["step"] for r in evals]
for r in evals:
    m = r["metrics"]
    for k in ("val_ce", "val_total", "refusal", "asr", "utility", "margin", "refusal/bad", "accuracy/repeat"):
        assert isinstance(m.get(k), float), (r["step"], k, m)
    if r["step"] == 0:
        continue
    res = {s["name"]: s for s in json.load(open("eval_%d.json" % r["step"]))["sets"]}
    # Exactly the numbers of `safetune eval`.
    assert m["refusal/bad"] == res["bad"]["refusal_rate"], (r["step"], m, res["bad"]["refusal_rate"])
    assert m["asr/bad"] == res["bad"]["attack_success_rate"], r["step"]
    assert m["accuracy/repeat"] == res["repeat"]["accuracy"], (r["step"], m, res["repeat"]["accuracy"])
    assert m["refusal"] == m["refusal/bad"] and m["utility"] == m["accuracy/repeat"]
refusals = [r["metrics"]["refusal"] for r in evals]
assert len(set(refusals)) > 1, "refusal never changed: the test would not tell runs apart"
# The best: the first evaluation with the highest refusal + utility.
scores = [r["metrics"]["refusal"] + r["metrics"]["utility"] for r in evals]
best = evals[scores.index(max(scores))]
b = json.load(open("run/best/eval.json"))
assert b["step"] == best["step"] and b["score"] == max(scores) and b["keep_best"] == "refusal+utility:max", b
assert b["metrics"] == best["metrics"]
open("best_step", "w").write("%08d" % best["step"])
PY
best=$(cat best_step)
if [ "$best" != 00000000 ]; then
  cmp -s run/best/adapter_model.safetensors "run/checkpoints/step-$best/adapter_model.safetensors" ||
    fail "best/ differs from the checkpoint of step $best"
fi
"$bin" summarize run >summary.txt 2>&1 || { cat summary.txt; fail "summarize"; }
grep -q "eval refusal" summary.txt || fail "summarize shows no evaluation: $(cat summary.txt)"

# Evaluations draw no random numbers and change no weight.
"$bin" train "${eval_args[@]}" train.output_dir=plain train.max_steps=12 lora.dropout=0.1 train.eval_suite= \
  >plain.log 2>&1 || { cat plain.log; fail "run without evaluations"; }
"$bin" train "${eval_args[@]}" train.output_dir=watched train.max_steps=12 lora.dropout=0.1 train.eval_every=4 \
  >watched.log 2>&1 || { cat watched.log; fail "run with evaluations"; }
cmp -s plain/adapter/adapter_model.safetensors watched/adapter/adapter_model.safetensors ||
  fail "evaluating changed the trained adapter"
"$py" - <<'PY' || fail "evaluating changed the losses"
import json
def losses(d):
    return [r["loss"] for r in map(json.loads, open(d + "/metrics.jsonl")) if r.get("kind") != "eval"]
assert losses("plain") == losses("watched")
PY

# Early stop: val_ce falls below half its first value by step 10 or 20.
"$bin" train "${eval_args[@]}" train.output_dir=stop train.max_steps=60 train.eval_every=10 \
  'train.early_stop=val_ce<0.5x' >stop.log 2>&1 || { cat stop.log; fail "early-stopped run: exit code"; }
grep -q "safetune: early stop: val_ce = .* < .*, 0.5 x its first value .* at step [0-9]* (train.early_stop = val_ce<0.5x)" \
  stop.log || fail "no early-stop message: $(grep -i stop stop.log)"
[ -f stop/adapter/adapter_model.safetensors ] || fail "no final adapter after the early stop"
"$py" - <<'PY' || fail "early-stopped records"
import json
records = [json.loads(l) for l in open("stop/metrics.jsonl")]
evals = [r for r in records if r.get("kind") == "eval"]
first = evals[0]["metrics"]["val_ce"]
last = evals[-1]
assert last["metrics"]["val_ce"] < 0.5 * first and all(r["metrics"]["val_ce"] >= 0.5 * first for r in evals[:-1])
assert max(r["step"] for r in records) == last["step"] < 60, [r["step"] for r in records]
state = json.load(open("stop/checkpoints/step-%08d/trainer_state.json" % last["step"]))
assert state["eval"]["stopped"] is True, state
PY
lines=$(wc -l <stop/metrics.jsonl)
"$bin" train "${eval_args[@]}" train.output_dir=stop train.max_steps=60 train.eval_every=10 \
  'train.early_stop=val_ce<0.5x' train.resume=auto >resume.log 2>&1 || { cat resume.log; fail "resume of a stopped run"; }
grep -q "the run stopped early" resume.log || fail "the resume does not say the run had stopped: $(cat resume.log)"
[ "$(wc -l <stop/metrics.jsonl)" = "$lines" ] || fail "the resume of a stopped run trained or evaluated again"
echo "PASS"
