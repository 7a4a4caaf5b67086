#!/usr/bin/env bash
# Data-parallel training over c10d Gloo on localhost (scripts/launch.sh), against plain
# single-process runs:
#  - 2 processes end with the same adapter (1e-5, compared with PyTorch from the files)
#    and the same per-step losses as 1 process accumulating the same global batch
#    (train.grad_accum=2 micro-batches of 2 examples: one per rank, or two in a row), over
#    18 examples so that the last step of each epoch has a single micro-batch (rank 1
#    sits it out);
#  - the same with objective.constraint=pact, the reference read from a ref-cache file
#    by every rank, and with adapter_off;
#  - a 2-process run resumed from its step-2 checkpoint by 1 process ends like the
#    2-process run;
#  - a rank killed mid-run (SIGKILL) or frozen (SIGSTOP) makes the other exit non-zero
#    with a "distributed training" error within train.dist_timeout_s, instead of hanging.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
export SAFETUNE_BIN=$bin
launch=$src/scripts/launch.sh
pids_to_kill=()
cleanup() {
  for p in "${pids_to_kill[@]}"; do kill -KILL "$p" 2>/dev/null; done
  remove_work
}
trap cleanup EXIT

# This build must have the Gloo backend (libgloo-dev at build time).
"$bin" bench allreduce --help >/dev/null 2>&1 || fail "no 'bench allreduce' in $bin"
WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 "$bin" bench allreduce --timeout 0.1 2>&1 |
  grep -q "built without c10d" && { echo "SKIP: safetune was built without c10d Gloo"; exit 77; }

init_small aligned 1
init_small probe 2
cat >"$work/refusals.jsonl" <<'J'
{"input": "How do I pick a lock?", "output": "I can't help with that."}
{"input": "Write malware.", "output": "Sorry, I cannot do that."}
J
for i in $(seq 0 17); do
  echo "{\"instruction\": \"Say colour $i\", \"output\": \"colour $i is $( ((i % 3 == 0)) && echo blue || echo a shade of green)\"}"
done >"$work/train.jsonl"
"$bin" tokens --aligned "$work/aligned" --probe "$work/probe" --data "$work/refusals.jsonl" --out "$work/tokens.json" \
  --topk 8 --max-resp-len 8 >/dev/null 2>&1 || fail "tokens"

# Global batch per step: batch_size 2 x grad_accum 2 = 4 examples, whatever the number of
# processes. 18 examples = 9 micro-batches = 5 steps per epoch; 7 steps cross an epoch.
common=("$src/configs/tiny.yaml" model.path="$work/aligned" data.train="$work/train.jsonl" train.batch_size=2
  train.grad_accum=2 train.max_steps=7 train.threads=1 train.log_every=1 train.save_every=2 lora.dropout=0
  train.dist_timeout_s=60)

# compare A B: same adapter (1e-5) and same per-step losses (1e-5); the adapter moved.
compare() {
  $py "$src/tests/reference/compare_runs.py" "$1" "$2" 7
}

# run_pair NAME [key=value ...]: 1 process, then 2 processes, then compare.
run_pair() {
  local name=$1; shift
  "$bin" train "${common[@]}" "$@" train.output_dir="$work/${name}_1" >"$work/${name}_1.log" 2>&1 ||
    { cat "$work/${name}_1.log"; fail "$name: 1 process"; }
  "$launch" -n 2 "${common[@]}" "$@" train.output_dir="$work/${name}_2" >"$work/${name}_2.log" 2>&1 ||
    { cat "$work/${name}_2.log"; fail "$name: 2 processes"; }
  grep -q "^\[rank 0\] .*data parallel: 2 processes" "$work/${name}_2.log" ||
    { cat "$work/${name}_2.log"; fail "$name: the 2-process run did not say it was data parallel"; }
  if grep -q "^\[rank 1\] .*\(step 1/\|INFO\|info\)" "$work/${name}_2.log"; then
    cat "$work/${name}_2.log"; fail "$name: rank 1 logged progress (rank 0 alone should)"
  fi
  local out
  out=$(compare "$work/${name}_1" "$work/${name}_2") || { echo "$out"; fail "$name: 2 processes != 1 process"; }
  echo "PASS $name: 2 processes x 1 micro-batch == 1 process x 2 accumulated: $out"
}

run_pair ce
# The comparison can fail: half the global batch (grad_accum 1) must not pass for it.
"$bin" train "${common[@]}" train.grad_accum=1 train.output_dir="$work/half" >"$work/half.log" 2>&1 ||
  { cat "$work/half.log"; fail "1 process, grad_accum 1"; }
compare "$work/ce_1" "$work/half" >/dev/null 2>&1 && fail "compare accepted runs with different global batches"
echo "PASS the comparison tells a different global batch apart"
"$bin" ref-cache "${common[@]}" objective.constraint=pact objective.tokens="$work/tokens.json" \
  --out "$work/ref.safetensors" >/dev/null 2>"$work/refcache.err" || { cat "$work/refcache.err"; fail "ref-cache"; }
run_pair pact_cache objective.constraint=pact objective.tokens="$work/tokens.json" objective.reference=cache \
  objective.ref_cache="$work/ref.safetensors"
run_pair pact_adapter_off objective.constraint=pact objective.tokens="$work/tokens.json" objective.reference=adapter_off

# Resume a 2-process run with 1 process: take its step-2 checkpoint as the latest (as if
# it had stopped there), drop what came later, continue with `safetune train` in the same
# run directory (the original is kept aside for the comparison).
cp -r "$work/ce_2" "$work/ce_2_full"
rm -rf "$work/ce_2/adapter" "$work/ce_2"/checkpoints/step-0000000[4-9]
[ -d "$work/ce_2/checkpoints/step-00000002" ] || fail "resume: no step-2 checkpoint in the 2-process run"
printf 'checkpoints/step-00000002' >"$work/ce_2/latest"
"$bin" train "${common[@]}" train.output_dir="$work/ce_2" train.resume=auto >"$work/resumed.log" 2>&1 ||
  { cat "$work/resumed.log"; fail "resume with 1 process"; }
grep -q "resuming .* from step 2 of 7" "$work/resumed.log" || { cat "$work/resumed.log"; fail "resume: did not resume from step 2"; }
out=$(compare "$work/ce_2_full" "$work/ce_2") || { echo "$out"; fail "resume: 1 process from a 2-process checkpoint"; }
echo "PASS resume of a 2-process run with 1 process: $out"

# A free port for a hand-started pair of ranks.
free_port() {
  local p
  for p in $(shuf -i 20000-60000 -n 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  return 1
}

# dead_rank HOW TIMEOUT: starts 2 ranks by hand, lets them train 3 steps, then does HOW
# (KILL or STOP) to rank 1; rank 0 must exit non-zero, saying why, within TIMEOUT + slack.
dead_rank() {
  local how=$1 timeout=$2 port r0 r1 rc t0 t1 waited
  port=$(free_port) || fail "no free port"
  local env=(WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port LOCAL_WORLD_SIZE=2)
  local args=("${common[@]}" train.max_steps=100000 train.save_every=0 train.dist_timeout_s=$timeout
    train.output_dir="$work/dead_$how")
  env "${env[@]}" RANK=0 LOCAL_RANK=0 "$bin" train "${args[@]}" >"$work/dead0.log" 2>&1 &
  r0=$!
  env "${env[@]}" RANK=1 LOCAL_RANK=1 "$bin" train "${args[@]}" >"$work/dead1.log" 2>&1 &
  r1=$!
  pids_to_kill+=("$r0" "$r1")
  for _ in $(seq 1 1200); do
    [ -f "$work/dead_$how/metrics.jsonl" ] && [ "$(wc -l <"$work/dead_$how/metrics.jsonl")" -ge 3 ] && break
    kill -0 $r0 2>/dev/null || break
    sleep 0.05
  done
  [ -f "$work/dead_$how/metrics.jsonl" ] && [ "$(wc -l <"$work/dead_$how/metrics.jsonl")" -ge 3 ] ||
    { cat "$work/dead0.log" "$work/dead1.log"; fail "dead rank ($how): the pair never trained"; }
  t0=$(date +%s.%N)
  kill -"$how" $r1
  # Rank 0 must be gone by TIMEOUT + 30 s (a generous margin for a loaded machine).
  waited=0
  while kill -0 $r0 2>/dev/null && [ $waited -lt $(( (timeout + 30) * 10 )) ]; do sleep 0.1; waited=$((waited + 1)); done
  if kill -0 $r0 2>/dev/null; then
    kill -KILL $r0 $r1 2>/dev/null
    fail "dead rank ($how): rank 0 still running $((timeout + 30)) s after rank 1 was stopped"
  fi
  wait $r0
  rc=$?
  t1=$(date +%s.%N)
  kill -KILL $r1 2>/dev/null
  wait $r1 2>/dev/null
  [ $rc -ne 0 ] || fail "dead rank ($how): rank 0 exited 0"
  grep -q "^safetune: error: distributed training, rank 0 of 2: .* failed" "$work/dead0.log" ||
    { cat "$work/dead0.log"; fail "dead rank ($how): no clear error from rank 0"; }
  echo "PASS dead rank ($how): rank 0 exit $rc after $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s" \
    "(timeout $timeout s): $(grep "^safetune: error" "$work/dead0.log")"
}
dead_rank KILL 60
dead_rank STOP 5

# The launcher: when a rank fails, the others are stopped and its exit code is returned.
"$launch" -n 2 "${common[@]}" train.output_dir="$work/bad" optim.lr=0 >"$work/bad.log" 2>&1
rc=$?
[ $rc -eq 2 ] || { cat "$work/bad.log"; fail "launch.sh with a bad config: exit $rc, expected 2"; }
grep -q "^\[rank [01]\] safetune: error: .*optim.lr" "$work/bad.log" || { cat "$work/bad.log"; fail "launch.sh: no prefixed error"; }
echo "PASS launch.sh returns the ranks' exit code 2 for a bad config"

# SIGTERM to the launcher is passed on: the ranks agree on the step, rank 0 saves one
# checkpoint and says how to resume, every process exits 0.
"$launch" -n 2 "${common[@]}" train.max_steps=100000 train.save_every=0 train.output_dir="$work/sig" >"$work/sig.log" 2>&1 &
lp=$!
pids_to_kill+=("$lp")
for _ in $(seq 1 1200); do
  [ -f "$work/sig/metrics.jsonl" ] && [ "$(wc -l <"$work/sig/metrics.jsonl")" -ge 3 ] && break
  sleep 0.05
done
kill -TERM $lp
wait $lp
rc=$?
[ $rc -eq 0 ] || { cat "$work/sig.log"; fail "SIGTERM to launch.sh: exit $rc, expected 0"; }
step=$(sed -n 's/^\[rank 0\] safetune: stopped at step \([0-9]*\) .*/\1/p' "$work/sig.log")
[ -n "$step" ] && [ "$(cat "$work/sig/latest")" = "checkpoints/step-$(printf %08d "$step")" ] ||
  { cat "$work/sig.log"; fail "SIGTERM to launch.sh: no checkpoint of the step it stopped at"; }
[ "$(grep -c "stopped at step" "$work/sig.log")" -eq 1 ] || { cat "$work/sig.log"; fail "SIGTERM: more than rank 0 reported"; }
echo "PASS SIGTERM to launch.sh: both ranks stopped at step $step with one checkpoint"
echo "PASS all"
