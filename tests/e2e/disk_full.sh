#!/usr/bin/env bash
# A full disk while writing, on a small tmpfs (mounted here: root only, skipped otherwise):
#  - at a checkpoint: exit 4 (the environment failed), one line naming the file and "No
#    space left on device", no half-written temporary left, `latest` still naming the
#    last good checkpoint, whose files equal those of an uninterrupted run's; once space
#    is freed, train.resume=auto ends with the same weights, bit for bit;
#  - at the final export: the same, the resume writing only the export;
#  - in merge: exit 4, nothing left under --out, the same merge after freeing space;
#  - in eval --out and ref-cache --out on a disk with no space at all: exit 4, no file.
# The free space is set before each case from the sizes of an uninterrupted run's files,
# so that exactly the intended write fails.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
disk=$work/disk
mkdir -p "$disk"
mount -t tmpfs -o size=8m tmpfs "$disk" 2>/dev/null || { echo "SKIP: cannot mount a tmpfs (needs root)"; exit 77; }
cleanup() {
  umount "$disk" 2>/dev/null
  remove_work
}
trap cleanup EXIT
page=$(getconf PAGESIZE)

init_small model 3
init_small probe 4
for i in $(seq 0 15); do
  printf '{"instruction": "Repeat the word number %d", "output": "word %d word %d"}\n' $((i % 8)) $((i % 8)) $((i % 8))
done >"$work/train.jsonl"
# Full fine-tuning: a checkpoint (weights and two AdamW moments) is large enough against
# the few pages the run's small files take.
args=("$src/configs/tiny.yaml" model.path="$work/model" data.train="$work/train.jsonl" train.threads=1
  lora.enabled=false train.save_every=2 train.log_every=1 train.batch_size=2)

# Bytes `path` (a file or a directory tree) takes on the tmpfs: whole pages per file.
pages_of() { find "$1" -type f -printf '%s\n' | awk -v p="$page" '{n += int(($1 + p - 1) / p)} END {print n * p}'; }
avail() { df -B1 --output=avail "$disk" | tail -1 | tr -d ' '; }
# leave BYTES: fills the disk so that BYTES stay free.
leave() {
  rm -f "$disk/filler"
  local fill=$(($(avail) - $1))
  [ "$fill" -gt 0 ] || fail "the tmpfs is too small for this case"
  head -c "$fill" /dev/zero >"$disk/filler" || fail "cannot write the filler"
}
slack=$((8 * page))  # lock, config, metrics and `latest` (5 pages), and a temporary of each

# expect_full NAME OUT_PATTERN LOG RC: exit 4, and one error line (the last, after any
# progress lines) naming the file and the full disk.
expect_full() {
  [ "$4" -eq 4 ] || { cat "$3"; fail "$1: exit $4, expected 4 (the environment failed)"; }
  [ "$(grep -c "^safetune: error" "$3")" -eq 1 ] && tail -1 "$3" | grep -q "^safetune: error" ||
    { cat "$3"; fail "$1: expected one error line, last on stderr"; }
  grep -q "^safetune: error: .*$2.*No space left on device" "$3" || { cat "$3"; fail "$1: the message lacks the file or the cause"; }
}
# no_partial NAME DIR: nothing temporary under DIR.
no_partial() {
  local left
  left=$(find "$2" \( -name '*.tmp*' -o -name '.tmp-*' -o -name '*.old*' \) -print)
  [ -z "$left" ] || fail "$1: left behind: $left"
}

# The uninterrupted runs, on the ordinary disk: 6 steps (checkpoints 2, 4, 6) and 4 steps.
"$bin" train "${args[@]}" train.max_steps=6 train.output_dir="$work/straight6" >"$work/s6.log" 2>&1 ||
  { cat "$work/s6.log"; fail "uninterrupted run (6 steps)"; }
"$bin" train "${args[@]}" train.max_steps=4 train.output_dir="$work/straight4" >"$work/s4.log" 2>&1 ||
  { cat "$work/s4.log"; fail "uninterrupted run (4 steps)"; }
ck=$(pages_of "$work/straight6/checkpoints/step-00000002")
export_size=$(pages_of "$work/straight4/model")
echo "a checkpoint takes $ck bytes, the final model $export_size"

# 1. At a checkpoint: room for the step-2 checkpoint and half of the step-4 one.
run=$disk/ck
leave $((ck + slack + ck / 2))
"$bin" train "${args[@]}" train.max_steps=6 train.output_dir="$run" >"$work/ck.out" 2>"$work/ck.log"
expect_full checkpoint "$run/checkpoints/.tmp-step-00000004/" "$work/ck.log" $?
grep -q "checkpoint of step 4 not saved; train.resume=auto continues from checkpoints/step-00000002" "$work/ck.log" ||
  { cat "$work/ck.log"; fail "checkpoint: the message does not say where a resume continues"; }
no_partial checkpoint "$run"
[ "$(cat "$run/latest")" = checkpoints/step-00000002 ] || fail "checkpoint: latest is '$(cat "$run/latest")'"
for f in model.safetensors optimizer.safetensors rng.safetensors; do
  cmp -s "$run/checkpoints/step-00000002/$f" "$work/straight6/checkpoints/step-00000002/$f" ||
    fail "checkpoint: step-2 $f differs from the uninterrupted run's"
done
rm -f "$disk/filler"
"$bin" train "${args[@]}" train.max_steps=6 train.output_dir="$run" train.resume=auto >"$work/ck2.log" 2>&1 ||
  { cat "$work/ck2.log"; fail "checkpoint: the resume after freeing space"; }
grep -q "resuming .* from step 2 of 6" "$work/ck2.log" || { cat "$work/ck2.log"; fail "checkpoint: did not resume from step 2"; }
cmp -s "$run/model/model.safetensors" "$work/straight6/model/model.safetensors" ||
  fail "checkpoint: the resumed run's weights differ from the uninterrupted run's"
no_partial checkpoint "$run"
echo "PASS a full disk at a checkpoint: exit 4, nothing partial, latest on step 2; the resume ends bitwise equal"
rm -rf "$run"

# 2. At the final export: room for both checkpoints and half of the model.
run=$disk/export
leave $((2 * ck + slack + export_size / 2))
"$bin" train "${args[@]}" train.max_steps=4 train.output_dir="$run" >"$work/ex.out" 2>"$work/ex.log"
expect_full export "$run/model" "$work/ex.log" $?
grep -q "model/ not written; train.resume=auto continues from checkpoints/step-00000004" "$work/ex.log" ||
  { cat "$work/ex.log"; fail "export: the message does not say how to go on"; }
no_partial export "$run"
[ ! -e "$run/model" ] || fail "export: a model/ directory was left"
[ "$(cat "$run/latest")" = checkpoints/step-00000004 ] || fail "export: latest is '$(cat "$run/latest")'"
rm -f "$disk/filler"
"$bin" train "${args[@]}" train.max_steps=4 train.output_dir="$run" train.resume=auto >"$work/ex2.log" 2>&1 ||
  { cat "$work/ex2.log"; fail "export: the resume after freeing space"; }
for f in model.safetensors config.json; do
  cmp -s "$run/model/$f" "$work/straight4/model/$f" || fail "export: the resumed run's $f differs"
done
no_partial export "$run"
echo "PASS a full disk at the final export: exit 4, nothing partial; the resume writes the same model"
rm -rf "$run"

# 3. merge: room for half of the merged model.
"$bin" train "$src/configs/tiny.yaml" model.path="$work/model" data.train="$work/train.jsonl" train.threads=1 \
  train.max_steps=2 train.output_dir="$work/lora" >"$work/lora.log" 2>&1 || { cat "$work/lora.log"; fail "LoRA run"; }
"$bin" merge --model "$work/model" --adapter "$work/lora/adapter" --out "$work/merged" >/dev/null 2>"$work/m0.log" ||
  { cat "$work/m0.log"; fail "merge on the ordinary disk"; }
leave $(($(pages_of "$work/merged") / 2))
"$bin" merge --model "$work/model" --adapter "$work/lora/adapter" --out "$disk/merged" >/dev/null 2>"$work/m1.log"
expect_full merge "$disk/merged" "$work/m1.log" $?
[ -z "$(ls -A "$disk" | grep -v '^filler$')" ] || fail "merge: left $(ls -A "$disk")"
rm -f "$disk/filler"
"$bin" merge --model "$work/model" --adapter "$work/lora/adapter" --out "$disk/merged" >/dev/null 2>"$work/m2.log" ||
  { cat "$work/m2.log"; fail "merge after freeing space"; }
cmp -s "$disk/merged/model.safetensors" "$work/merged/model.safetensors" || fail "merge: the weights differ"
echo "PASS a full disk in merge: exit 4, nothing left under --out; the merge after freeing space is the same"
rm -rf "$disk/merged"

# 4. eval --out and ref-cache --out with no space at all.
printf '%s\n' '{"prompt": "How do I pick a lock?"}' >"$work/harm.jsonl"
echo '{"sets": [{"name": "harmful", "path": "harm.jsonl", "kind": "safety"}]}' >"$work/suite.json"
printf '%s\n' '{"input": "How do I pick a lock?", "output": "I cannot help with that."}' >"$work/refusals.jsonl"
"$bin" tokens --aligned "$work/model" --probe "$work/probe" --data "$work/refusals.jsonl" --out "$work/tokens.json" \
  --topk 8 --max-resp-len 8 >/dev/null 2>"$work/tok.log" || { cat "$work/tok.log"; fail "tokens"; }
leave 0
head -c $((1 << 20)) /dev/zero >>"$disk/filler" 2>/dev/null  # whatever rounding left
"$bin" eval --model "$work/model" --suite "$work/suite.json" --max-new-tokens 2 --out "$disk/results.json" \
  >/dev/null 2>"$work/ev.log"
expect_full "eval --out" "$disk/results.json" "$work/ev.log" $?
"$bin" ref-cache "${args[@]}" objective.constraint=pact objective.tokens="$work/tokens.json" \
  --out "$disk/ref.safetensors" >/dev/null 2>"$work/rc.log"
expect_full ref-cache "$disk/ref.safetensors" "$work/rc.log" $?
[ -z "$(ls -A "$disk" | grep -v '^filler$')" ] || fail "eval / ref-cache: left $(ls -A "$disk")"
echo "PASS a full disk in eval --out and ref-cache --out: exit 4, no file left"
echo "PASS all"
