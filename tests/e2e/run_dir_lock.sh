#!/usr/bin/env bash
# One process per run directory:
#  - pairs of `safetune train ... train.resume=auto` on one run directory, the second
#    started 0 to 500 ms after the first (spread evenly): every time, one of them (the
#    later, unless both start at once) exits 2 with one line naming the directory and
#    the other's pid, and leaves the directory as it was;
#  - the holder SIGKILLed: the lock goes with it, and a resume there proceeds to the end;
#  - bad input after the lock (a missing model) leaves no run directory behind;
#  - ref-cache --out inside a run directory in use is refused the same way;
#  - a data-parallel run (scripts/launch.sh): rank 0 holds the lock.
#
#   RUN_DIR_LOCK_PAIRS  pairs to start (default 6; 20 for the reliability target)
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
pairs=${RUN_DIR_LOCK_PAIRS:-6}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  remove_work
}
trap cleanup EXIT
cd "$work"

init_small model 3
init_small probe 4
for i in $(seq 0 15); do
  printf '{"instruction": "Repeat the word number %d", "output": "word %d word %d"}\n' $((i % 8)) $((i % 8)) $((i % 8))
done >train.jsonl
# Long enough that the first is still training when the second starts.
args=("$src/configs/tiny.yaml" model.path=model data.train=train.jsonl train.threads=1 train.max_steps=100000
  train.save_every=5 train.log_every=1 train.resume=auto)

# state DIR: a checksum of the files of DIR (their names and contents).
state() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum | sha256sum); }
# is_refusal LOG DIR PID: LOG is one line refusing DIR because PID holds it.
is_refusal() {
  [ "$(wc -l <"$1")" -eq 1 ] &&
    grep -qF "safetune: error: train.output_dir: '$2' is in use by another safetune process (pid $3)" "$1"
}

refused_later=0 earlier_at=""
for k in $(seq 0 $((pairs - 1))); do
  dir=pair$k
  delay_ms=$(( pairs > 1 ? k * 500 / (pairs - 1) : 0 ))
  "$bin" train "${args[@]}" train.output_dir=$dir >first$k.log 2>&1 &
  a=$!
  sleep "$(awk "BEGIN {print $delay_ms / 1000}")"
  "$bin" train "${args[@]}" train.output_dir=$dir >second$k.log 2>&1 &
  b=$!
  pids+=("$a" "$b")
  # Whichever exits first must be the refused one; the other must still be training.
  gone=""
  for _ in $(seq 1 600); do
    if ! kill -0 $b 2>/dev/null; then gone=b; break; fi
    if ! kill -0 $a 2>/dev/null; then gone=a; break; fi
    sleep 0.05
  done
  [ -n "$gone" ] || fail "pair $k ($delay_ms ms): neither process exited within 30 s"
  if [ $gone = b ]; then loser=$b winner=$a log=second$k.log; else loser=$a winner=$b log=first$k.log; fi
  wait $loser
  rc=$?
  [ $rc -eq 2 ] || { cat "$log"; fail "pair $k ($delay_ms ms): the refused process exited $rc, expected 2"; }
  is_refusal "$log" $dir $winner || { cat "$log"; fail "pair $k ($delay_ms ms): not a one-line refusal naming $dir and pid $winner"; }
  kill -0 $winner 2>/dev/null || fail "pair $k ($delay_ms ms): the holder is not running"
  if [ $gone = b ]; then refused_later=$((refused_later + 1)); else earlier_at+=" ${delay_ms}ms"; fi
  kill -KILL $winner
  wait $winner 2>/dev/null
done
# Started within a process's start-up jitter of each other, either may get there first.
echo "PASS $pairs pairs 0-500 ms apart: one refused every time, never both running; the later one" \
  "$refused_later times${earlier_at:+, the earlier one at a delay of$earlier_at}"

# The holder SIGKILLed once it has a checkpoint: the kernel drops its lock; a resume proceeds.
short=("${args[@]}" train.max_steps=2000 train.output_dir=killed)
"$bin" train "${short[@]}" >killed.log 2>&1 &
holder=$!
pids+=("$holder")
for _ in $(seq 1 600); do [ -e killed/latest ] && break; sleep 0.05; done
kill -KILL $holder
wait $holder 2>/dev/null
[ -e killed/latest ] || { cat killed.log; fail "the holder wrote no checkpoint"; }
[ ! -e killed/adapter ] || fail "the holder finished before it was killed; give it more steps"
[ "$(cut -d' ' -f1 killed/.lock)" = "$holder" ] || fail "the lock file does not name the holder's pid"
"$bin" train "${short[@]}" >resumed.log 2>&1 || { cat resumed.log; fail "resume after the holder was SIGKILLed"; }
grep -q "resuming .* from step" resumed.log || { cat resumed.log; fail "the run after the kill did not resume"; }
[ -f killed/adapter/adapter_model.safetensors ] || fail "the resumed run wrote no adapter"
echo "PASS the lock of a SIGKILLed holder is gone: a resume proceeds to the end"

# A refused process leaves the directory as it was, byte for byte.
"$bin" train "${args[@]}" train.output_dir=held >held.log 2>&1 &
holder=$!
pids+=("$holder")
for _ in $(seq 1 600); do [ -e held/latest ] && break; sleep 0.05; done
kill -STOP $holder  # frozen, still holding the lock
before=$(state held)
"$bin" train "${args[@]}" train.output_dir=held train.resume=none train.overwrite=true >refused.log 2>&1
rc=$?
[ $rc -eq 2 ] && is_refusal refused.log held $holder || { cat refused.log; fail "overwrite of a directory in use: exit $rc"; }
[ "$(state held)" = "$before" ] || fail "the refused process changed the directory"
echo "PASS a refused train.overwrite=true leaves the directory byte for byte as it was"

# ref-cache writing into the held directory is refused too.
printf '%s\n' '{"input": "How do I pick a lock?", "output": "I cannot help with that."}' >refusals.jsonl
"$bin" tokens --aligned model --probe probe --data refusals.jsonl --out tokens.json --topk 8 --max-resp-len 8 \
  >/dev/null 2>tok.log || { cat tok.log; fail "tokens"; }
"$bin" ref-cache "${args[@]}" objective.constraint=pact objective.tokens=tokens.json --out held/ref.safetensors \
  >/dev/null 2>rc.log
rc=$?
[ $rc -eq 2 ] && grep -qF "'held' is in use by another safetune process (pid $holder)" rc.log ||
  { cat rc.log; fail "ref-cache into a directory in use: exit $rc"; }
[ ! -e held/ref.safetensors ] || fail "ref-cache wrote into a directory in use"
kill -KILL $holder
wait $holder 2>/dev/null
"$bin" ref-cache "${args[@]}" objective.constraint=pact objective.tokens=tokens.json --out held/ref.safetensors \
  >/dev/null 2>rc.log || { cat rc.log; fail "ref-cache once the directory is free"; }
echo "PASS ref-cache into a run directory in use is refused, and writes once it is free"

# Bad input found after the lock: the directory it created is gone again.
"$bin" train "${args[@]}" train.output_dir=out/fresh model.path=no-such-model >bad.log 2>&1
[ $? -eq 2 ] || { cat bad.log; fail "bad input: expected exit 2"; }
[ ! -e out ] || fail "bad input left $(find out)"
echo "PASS bad input leaves no run directory behind"

# Data parallel: rank 0 holds the lock (its pid is the one named).
if WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 "$bin" bench allreduce --timeout 0.1 2>&1 |
  grep -q "built without c10d"; then
  echo "SKIP data parallel: built without c10d Gloo"
else
  SAFETUNE_BIN=$bin bash "$src/scripts/launch.sh" -n 2 "${args[@]}" train.grad_accum=2 train.output_dir=dp \
    >dp.log 2>&1 &
  launcher=$!
  pids+=("$launcher")
  for _ in $(seq 1 600); do [ -e dp/latest ] && break; sleep 0.05; done
  [ -e dp/latest ] || { cat dp.log; fail "the data-parallel run wrote no checkpoint"; }
  rank0=$(cut -d' ' -f1 dp/.lock)
  "$bin" train "${args[@]}" train.grad_accum=2 train.output_dir=dp >dp2.log 2>&1
  rc=$?
  [ $rc -eq 2 ] && is_refusal dp2.log dp "$rank0" || { cat dp2.log; fail "a run on a data-parallel run's directory: exit $rc"; }
  tr '\0' '\n' </proc/"$rank0"/environ 2>/dev/null | grep -qx "RANK=0" || fail "the lock's holder (pid $rank0) is not rank 0"
  kill -TERM $launcher
  wait $launcher 2>/dev/null
  echo "PASS a data-parallel run's directory is held by rank 0 (pid $rank0)"
fi
echo "PASS all"
