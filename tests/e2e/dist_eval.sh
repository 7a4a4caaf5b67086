#!/usr/bin/env bash
# Evaluation during data-parallel training (scripts/launch.sh, Gloo on localhost): two
# processes split each evaluation (held-out batches and the suite's generation batches,
# batch b on rank b mod 2) and write one record per evaluation, from rank 0, equal to a
# single process's, every number exactly: each batch is formed and computed as one
# process does it, each item's numbers are summed with zeros only, and with two ranks the
# weights stay identical too (a sum of two gradients does not depend on its order).
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
[ -x "$py" ] || { echo "SKIP: $py not found"; exit 77; }
export SAFETUNE_BIN=$bin
"$bin" bench allreduce --help >/dev/null 2>&1 || fail "no 'bench allreduce' in $bin"
WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 "$bin" bench allreduce --timeout 0.1 2>&1 |
  grep -q "built without c10d" && { echo "SKIP: safetune was built without c10d Gloo"; exit 77; }
. "$(dirname "$0")/lib/eval_world.sh"
cd "$work" || exit 1

# 9 held-out examples in batches of 4: 3 batches, rank 1 has one; the suite's sets of 8
# prompts in batches of 3: 3 batches each, the last one short.
head -9 train.jsonl >held.jsonl
args=("${eval_args[@]}" train.eval_batch_size=3 train.batch_size=2 train.grad_accum=2 train.threads=1
  train.max_steps=12 train.eval_every=6 train.keep_best=refusal:max train.dist_timeout_s=60)
"$bin" train "${args[@]}" train.output_dir=one >one.log 2>&1 || { cat one.log; fail "1 process"; }
"$src/scripts/launch.sh" -n 2 "${args[@]}" train.output_dir=two >two.log 2>&1 || { cat two.log; fail "2 processes"; }
"$py" - <<'PY' || fail "evaluation records differ"
import json
def evals(d):
    return [r for r in map(json.loads, open(d + "/metrics.jsonl")) if r.get("kind") == "eval"]
one, two = evals("one"), evals("two")
assert [r["step"] for r in one] == [r["step"] for r in two] == [0, 6, 12], ([r["step"] for r in one], [r["step"] for r in two])
for a, b in zip(one, two):
    ma, mb = a["metrics"], b["metrics"]
    assert sorted(ma) == sorted(mb), (sorted(ma), sorted(mb))
    assert ma == mb, (a["step"], {k: (ma[k], mb[k]) for k in ma if ma[k] != mb[k]})
    assert all(isinstance(v, float) for v in ma.values()), ma
PY
[ -f two/best/eval.json ] || fail "the 2-process run kept no best weights"
echo "PASS"
