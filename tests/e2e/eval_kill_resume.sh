#!/usr/bin/env bash
# Kill and resume with evaluation during training: a run that evaluates every 4 steps and
# keeps its best weights is SIGKILLed 1 to 3 times per round, either in the middle of an
# evaluation (once a step's metrics record of an evaluated step is written and its
# evaluation record not yet) or at a random time, and resumed with train.resume=auto each
# time. At the end metrics.jsonl (without its timings), run_dir/best and the final adapter
# equal those of a run that was never stopped.
#
#   EVAL_KILL_ROUNDS  rounds (default 3)
#   EVAL_KILL_SEED    seed of the kill plan (default: random, printed)
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
[ -x "$py" ] || { echo "SKIP: $py not found"; exit 77; }
. "$(dirname "$0")/lib/eval_world.sh"
rounds=${EVAL_KILL_ROUNDS:-3}
seed=${EVAL_KILL_SEED:-$RANDOM}
cd "$work" || exit 1
echo "eval_kill_resume: $rounds rounds, seed $seed (rerun with EVAL_KILL_SEED=$seed)"

args=("${eval_args[@]}" train.threads=1 train.max_steps=24 train.eval_every=4 train.save_every=2 lora.dropout=0.1
  train.keep_best=refusal+utility:max train.resume=auto)
start=$(date +%s%N)
"$bin" train "${args[@]}" train.output_dir=straight >straight.log 2>&1 || { cat straight.log; fail "uninterrupted run"; }
straight_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "uninterrupted run: $straight_ms ms"
[ -f straight/best/eval.json ] || fail "the uninterrupted run kept no best weights"

# killer.py RUN_DIR SEED STRAIGHT_MS -- COMMAND...: starts COMMAND and SIGKILLs it, in an
# evaluation or at a random time. Exit 0 if killed, 10 if the command finished first.
cat >killer.py <<'PY'
import json, os, random, signal, subprocess, sys, time
run, seed, straight_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cmd = sys.argv[sys.argv.index("--") + 1:]
rng = random.Random(seed)
mode = rng.choice(["eval", "eval", "time"])
nth = rng.randint(1, 4)           # eval: which evaluation of this process to hit
delay = rng.uniform(0, 0.7 * straight_ms / 1000)
micro = rng.choice([0, 0.001, 0.005, 0.02, 0.05])
metrics = os.path.join(run, "metrics.jsonl")

def evaluating():  # the last record is a step record of an evaluated step
    try:
        lines = [l for l in open(metrics).read().split("\n") if l]
        last = json.loads(lines[-1])
    except (OSError, IndexError, ValueError):
        return None
    if last.get("kind") == "eval" or last["step"] % 4 != 0:
        return None
    return last["step"]

with open("attempt.log", "ab") as log:
    p = subprocess.Popen(cmd, stdout=log, stderr=log)
t0 = time.monotonic()
seen, last = 0, None
while p.poll() is None:
    if mode == "time" and time.monotonic() - t0 >= delay:
        break
    if mode == "eval":
        s = evaluating()
        if s is not None and s != last:
            seen += 1
            last = s
            if seen >= nth:
                time.sleep(micro)
                break
    time.sleep(0.0005)
if p.poll() is not None:
    print("finished before the kill (%s)" % mode)
    sys.exit(10 if p.returncode == 0 else p.returncode)
p.send_signal(signal.SIGKILL)
p.wait()
print("killed (%s%s)" % (mode, " at the evaluation of step %d" % last if mode == "eval" else ""))
PY

# Everything but the timings, which differ from run to run.
cat >strip.py <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    for k in ("elapsed_s", "tokens_per_s", "eval_s", "peak_mem_mb"):
        r.pop(k, None)
    print(json.dumps(r, sort_keys=True))
PY
"$py" strip.py straight/metrics.jsonl >straight.metrics || fail "straight metrics"

for round in $(seq 1 "$rounds"); do
  dir=round$round
  kills=$(( (seed + round) % 3 + 1 ))
  for k in $(seq 1 "$kills"); do
    "$py" killer.py "$dir" $((seed * 100 + round * 10 + k)) "$straight_ms" -- "$bin" train "${args[@]}" \
      train.output_dir="$dir" >kill.log 2>&1
    rc=$?
    echo "round $round, attempt $k: $(cat kill.log)"
    [ $rc -eq 0 ] || [ $rc -eq 10 ] || { cat attempt.log; fail "round $round: exit code $rc"; }
  done
  "$bin" train "${args[@]}" train.output_dir="$dir" >final.log 2>&1 || { cat final.log; fail "round $round: resume"; }
  "$py" strip.py "$dir/metrics.jsonl" >"$dir.metrics" || fail "round $round: metrics"
  diff -q straight.metrics "$dir.metrics" >/dev/null ||
    { diff straight.metrics "$dir.metrics" | head -6; fail "round $round: metrics.jsonl differs"; }
  for f in best/eval.json best/adapter_model.safetensors adapter/adapter_model.safetensors; do
    cmp -s "straight/$f" "$dir/$f" || fail "round $round: $f differs from the uninterrupted run's"
  done
  leftover=$(find "$dir" \( -name '*.tmp*' -o -name '.tmp-*' -o -name '*.old*' \) | head -3)
  [ -z "$leftover" ] || fail "round $round: temporaries left: $leftover"
done
echo "PASS"
