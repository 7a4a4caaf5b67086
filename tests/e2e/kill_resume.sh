#!/usr/bin/env bash
# Kill and resume: a training run SIGKILLed at random moments, then continued with
# train.resume=auto, ends with the same adapter, bit for bit, as a run that was never
# stopped; and whenever it dies, `latest` names a complete checkpoint.
#
# The tiny config trains 20 steps with a checkpoint after every step and dropout on (so
# the RNG state must survive too); odd rounds train LoRA adapters, even rounds every weight.
# Each round starts a fresh run directory and kills the run 1 to 3 times before letting it
# finish. A kill lands either at a random time since
# the start, or right when a checkpoint (or the final adapter) is being written: the
# killer watches for the temporary directory and fires after a random few hundred
# microseconds. After every kill the run directory is checked; after the last resume,
# the final adapter is compared with the uninterrupted one's and no temporary files or
# directories may be left.
#
#   KILL_RESUME_ROUNDS  rounds (default 3; 20 for the reliability target)
#   KILL_RESUME_SEED    seed of the kill plan (default: random, printed)
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
rounds=${KILL_RESUME_ROUNDS:-3}
seed=${KILL_RESUME_SEED:-$RANDOM}
cd "$work"
echo "kill_resume: $rounds rounds, seed $seed (rerun with KILL_RESUME_SEED=$seed)"

"$bin" init --arch llama --out model --seed 3 >/dev/null || { echo "FAIL: init"; exit 1; }
for i in $(seq 0 31); do
  printf '{"instruction": "Repeat the word number %d", "output": "word %d word %d"}\n' $((i % 8)) $((i % 8)) $((i % 8))
done > train.jsonl
args=("$src/configs/tiny.yaml" model.path=model data.train=train.jsonl train.threads=1 train.max_steps=20
      train.save_every=1 train.log_every=1 lora.dropout=0.1 train.resume=auto)

# The two kinds of run: extra arguments, and the final weights file in the run directory.
kind_args=("" "lora.enabled=false")
kind_file=(adapter/adapter_model.safetensors model/model.safetensors)
straight_ms=()
for k in 0 1; do
  start=$(date +%s%N)
  if ! "$bin" train "${args[@]}" ${kind_args[$k]} train.output_dir=straight$k >straight.log 2>&1; then
    echo "FAIL: uninterrupted run"; cat straight.log; exit 1
  fi
  straight_ms[$k]=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "uninterrupted run (${kind_file[$k]%%/*}): ${straight_ms[$k]} ms"
done

# killer.py RUN_DIR SEED STRAIGHT_MS -- COMMAND...: starts COMMAND, kills it with SIGKILL
# at a moment chosen from SEED, prints what it did. Exit 0 if killed, 10 if the command
# finished first (its exit code must then be 0).
cat >killer.py <<'PY'
import os, random, signal, subprocess, sys, time
run, seed, straight_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cmd = sys.argv[sys.argv.index("--") + 1:]
rng = random.Random(seed)
mode = rng.choice(["time", "checkpoint", "checkpoint", "final"])
nth = rng.randint(1, 8)  # checkpoint: which write to hit (counted in this process)
delay = rng.uniform(0, 0.6 * straight_ms / 1000)  # run times vary with the machine's load
micro = rng.choice([0, 0, 50, 200, 500, 1000, 2000]) / 1e6
ckdir = os.path.join(run, "checkpoints")

def writing():
    names = os.listdir(ckdir) if os.path.isdir(ckdir) else []
    return [n for n in names if n.startswith(".tmp-")]

def final_writing():  # the final adapter/ or model/ being exported
    names = os.listdir(run) if os.path.isdir(run) else []
    return [n for n in names if n.startswith(("adapter.tmp", "model.tmp"))]

with open(os.path.join(os.path.dirname(run) or ".", "attempt.log"), "ab") as log:
    p = subprocess.Popen(cmd, stdout=log, stderr=log)
t0 = time.monotonic()
seen, last = 0, None
while p.poll() is None:
    if mode == "time" and time.monotonic() - t0 >= delay:
        break
    if mode == "checkpoint":
        w = writing()
        if w and w != last:
            seen += 1
        last = w
        if w and seen >= nth:
            break
    if mode == "final" and final_writing():
        break
    time.sleep(0.0002)
if p.poll() is not None:
    print(f"{mode}: finished before the kill (exit {p.returncode})")
    sys.exit(10 if p.returncode == 0 else 1)
if mode != "time":
    time.sleep(micro)
os.kill(p.pid, signal.SIGKILL)
p.wait()
tmp = writing() + final_writing()
what = {"time": f"after {time.monotonic() - t0:.3f}s", "checkpoint": f"in checkpoint write #{nth}, +{micro * 1e6:.0f}us",
        "final": f"in the final export, +{micro * 1e6:.0f}us"}[mode]
print(f"{mode}: killed {what}" + (f" (left {', '.join(tmp)})" if tmp else ""))
PY

# check.py RUN_DIR [final]: `latest`, if present, names a complete checkpoint whose files
# all parse; with `final`, nothing temporary is left in the run directory.
cat >check.py <<'PY'
import json, os, re, struct, sys
run, final = sys.argv[1], len(sys.argv) > 2

def check_safetensors(path):  # header parses, tensors tile the data, file not cut short
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    assert ends and 8 + n + max(ends) == len(blob), f"{path}: {len(blob)} bytes, header says more"
latest = os.path.join(run, "latest")
if os.path.exists(latest):
    rel = open(latest).read()
    assert re.fullmatch(r"checkpoints/step-\d{8}\n", rel), f"latest holds {rel!r}"
    d = os.path.join(run, rel.strip())
    assert os.path.isdir(d), f"latest names {rel.strip()}, which does not exist"
    st = json.load(open(os.path.join(d, "trainer_state.json")))
    assert st["step"] == int(rel.strip()[-8:]), (st["step"], rel)
    lora = os.path.exists(os.path.join(d, "adapter_config.json"))
    json.load(open(os.path.join(d, "adapter_config.json" if lora else "config.json")))
    weights = "adapter_model.safetensors" if lora else "model.safetensors"
    for f in (weights, "optimizer.safetensors", "rng.safetensors"):
        check_safetensors(os.path.join(d, f))
    assert os.path.getsize(os.path.join(d, "config.resolved.yaml")) > 0
if final:
    left = [n for n in os.listdir(run) if ".tmp" in n or ".old" in n]
    ck = os.path.join(run, "checkpoints")
    left += ["checkpoints/" + n for n in os.listdir(ck) if n.startswith(".") or ".old" in n]
    assert not left, f"left behind: {left}"
PY

failed=0 kills=0 during_write=0
for round in $(seq 1 "$rounds"); do
  dir=round$round
  k=$(( (round + 1) % 2 ))
  run=("${args[@]}" ${kind_args[$k]} train.output_dir=$dir)
  nkills=$(( (seed + round) % 3 + 1 ))
  log=""
  for attempt in $(seq 1 "$nkills"); do
    out=$($py killer.py "$dir" $((seed * 1000 + round * 10 + attempt)) "${straight_ms[$k]}" -- \
          "$bin" train "${run[@]}")
    rc=$?
    log+=" [$out]"
    if [ $rc -eq 10 ]; then break; fi
    if [ $rc -ne 0 ]; then echo "FAIL round $round: a run failed:$log"; tail -5 attempt.log; failed=1; break; fi
    kills=$((kills + 1))
    case $out in *"(left"*) during_write=$((during_write + 1));; esac
    if ! err=$($py check.py "$dir" 2>&1); then
      echo "FAIL round $round: after a kill:$log"; echo "$err" | tail -3; failed=1; break
    fi
  done
  [ $failed -ne 0 ] && break
  if ! "$bin" train "${run[@]}" >final.log 2>&1; then
    echo "FAIL round $round: the resumed run failed:$log"; tail -5 final.log; failed=1; break
  fi
  if ! err=$($py check.py "$dir" final 2>&1); then
    echo "FAIL round $round: after the last resume:$log"; echo "$err" | tail -3; failed=1; break
  fi
  if ! cmp -s straight$k/${kind_file[$k]} $dir/${kind_file[$k]}; then
    echo "FAIL round $round: final ${kind_file[$k]} differs from the uninterrupted run's:$log"; failed=1; break
  fi
  echo "PASS round $round (${kind_file[$k]%%/*}):$log"
  rm -rf "$dir" attempt.log
done
echo "kill_resume: $kills kills, $during_write of them left a checkpoint half-written"
[ $failed -eq 0 ] && echo "kill_resume: all $rounds rounds ended bitwise identical"
exit $failed
