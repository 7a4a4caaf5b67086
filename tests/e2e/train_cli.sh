#!/usr/bin/env bash
# `safetune train` / `merge` from the command line, on a tiny model made by `safetune init`
# and a dataset written here:
#  - bad input (lr <= 0, unknown target module, rank larger than the layer, missing or
#    empty dataset, an output directory holding another run, a typo in a key): exit 2 and
#    one line on stderr, before anything is written;
#  - SIGTERM in the middle of a run: exit 0, a checkpoint, a printed resume command; running
#    that command ends with the same adapter, bit for bit, as a run that never stopped;
#  - merge writes a complete model directory whose weights are W + alpha/r B A
#    (checked independently with PyTorch, from the files).
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
failed=0
cd "$work"

"$bin" init --arch llama --out model --seed 3 >/dev/null || { echo "FAIL: init"; exit 1; }
for i in $(seq 0 31); do
  printf '{"instruction": "Repeat the word number %d", "output": "word %d word %d"}\n' $((i % 8)) $((i % 8)) $((i % 8))
done > train.jsonl
: > empty.jsonl
base=("$src/configs/tiny.yaml" model.path=model data.train=train.jsonl train.threads=1)

expect_error() {  # name, pattern, output dir that must stay absent, command...
  local name=$1 pattern=$2 out=$3; shift 3
  "$@" >stdout 2>stderr
  local rc=$? lines
  lines=$(wc -l <stderr)
  if [ $rc -ne 2 ]; then echo "FAIL $name: exit $rc, expected 2"; cat stderr; failed=1; return; fi
  if [ "$lines" -ne 1 ]; then echo "FAIL $name: $lines lines on stderr, expected 1"; cat stderr; failed=1; return; fi
  if ! grep -qF -- "$pattern" stderr; then echo "FAIL $name: message lacks '$pattern':"; cat stderr; failed=1; return; fi
  if [ -n "$out" ] && [ -e "$out/config.resolved.yaml" ]; then echo "FAIL $name: run started anyway"; failed=1; return; fi
  echo "PASS $name: $(cat stderr)"
}

expect_error lr_zero "optim.lr" bad "$bin" train "${base[@]}" train.output_dir=bad optim.lr=0
expect_error lr_negative "optim.lr" bad "$bin" train "${base[@]}" train.output_dir=bad optim.lr=-1e-4
expect_error unknown_module "qkv_proj" bad "$bin" train "${base[@]}" train.output_dir=bad 'lora.target_modules=[q_proj,qkv_proj]'
expect_error rank_too_large "r <= 32" bad "$bin" train "${base[@]}" train.output_dir=bad lora.r=33
expect_error missing_data "nothing.jsonl" bad "$bin" train "${base[@]}" train.output_dir=bad data.train=nothing.jsonl
expect_error empty_data "empty" bad "$bin" train "${base[@]}" train.output_dir=bad data.train=empty.jsonl
expect_error key_typo "did you mean" bad "$bin" train "${base[@]}" train.output_dir=bad optim.learning_rat=1e-3
expect_error constraint "objective.tokens" bad "$bin" train "${base[@]}" train.output_dir=bad objective.constraint=anchor

# A run that never stops.
run=("${base[@]}" train.max_steps=400 train.save_every=0 train.log_every=1 lora.dropout=0.1 optim.lr=1e-3)
if ! "$bin" train "${run[@]}" train.output_dir=straight >straight.log 2>&1; then
  echo "FAIL straight run"; cat straight.log; exit 1
fi
expect_error existing_run "train.resume=auto" "" "$bin" train "${run[@]}" train.output_dir=straight

# The same run, stopped by SIGTERM once it has logged 20 steps, then resumed with the
# command it printed.
"$bin" train "${run[@]}" train.output_dir=stopped >stopped.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -f stopped/metrics.jsonl ] && [ "$(wc -l <stopped/metrics.jsonl)" -ge 20 ] && break
  sleep 0.05
done
kill -TERM $pid
wait $pid
rc=$?
resume=$(sed -n 's/^resume with: //p' stopped.log)
if [ $rc -ne 0 ] || [ -z "$resume" ]; then
  echo "FAIL sigterm: exit $rc, resume line '$resume'"; cat stopped.log; failed=1
elif [ -e stopped/adapter ]; then
  echo "FAIL sigterm: the run finished before the signal (make it longer)"; failed=1
else
  steps=$(wc -l <stopped/metrics.jsonl)
  echo "PASS sigterm: stopped at step $steps of 400, exit 0; $resume"
  eval "${resume/#safetune/\"$bin\"}" >resumed.log 2>&1 || { echo "FAIL resume"; cat resumed.log; failed=1; }
  if cmp -s straight/adapter/adapter_model.safetensors stopped/adapter/adapter_model.safetensors; then
    echo "PASS resume: final adapter identical to the uninterrupted run"
  else
    echo "FAIL resume: final adapters differ"; failed=1
  fi
fi

# Merge, checked from the files with PyTorch: every targeted weight is W + alpha/r B A,
# every other tensor is unchanged, and the tokenizer came along.
if "$bin" merge --model model --adapter straight/adapter --out merged >merge.log 2>&1; then
  if $py - "$src/tests/reference" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
from hf_forward import read_checkpoint
from safetensors_io import read_safetensors
base, merged = read_checkpoint("model"), read_checkpoint("merged")
ad = read_safetensors("straight/adapter/adapter_model.safetensors")[0]
cfg = json.load(open("straight/adapter/adapter_config.json"))
scale = cfg["lora_alpha"] / cfg["r"]
assert cfg["peft_type"] == "LORA" and set(base) == set(merged)
done = 0
for name, w in base.items():
    key = "base_model.model." + name[: -len(".weight")]
    if key + ".lora_A.weight" in ad:
        want = w.double() + scale * ad[key + ".lora_B.weight"].double() @ ad[key + ".lora_A.weight"].double()
        err = (merged[name].double() - want).abs().max().item()
        assert err < 1e-6, (name, err)
        assert (merged[name] != w).any(), name
        done += 1
    else:
        assert torch.equal(merged[name], w), name
assert done == 2 * len(cfg["target_modules"])  # 2 layers
print(f"merged {done} weights as W + {scale} B A")
PY
  then echo "PASS merge"; else echo "FAIL merge: weights"; failed=1; fi
  [ -f merged/tokenizer.json ] || { echo "FAIL merge: tokenizer.json not copied"; failed=1; }
else
  echo "FAIL merge"; cat merge.log; failed=1
fi
# The merged model's logits equal base + adapter's (logits --adapter), within 1e-5.
if "$bin" logits --model merged --ids 5,17,99,3,42,7 --out merged.safetensors 2>/dev/null &&
   "$bin" logits --model model --adapter straight/adapter --ids 5,17,99,3,42,7 --out adapter.safetensors 2>/dev/null &&
   "$bin" logits --model model --ids 5,17,99,3,42,7 --out base.safetensors 2>/dev/null; then
  if $py - "$src/tests/reference" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from safetensors_io import read_safetensors
m, a, b = (read_safetensors(f)[0]["logits"] for f in ("merged.safetensors", "adapter.safetensors", "base.safetensors"))
err = (m - a).abs().max().item()
assert err < 1e-5, err
assert (a - b).abs().max().item() > 1e-4  # the adapter does change the logits
print(f"max |merged - (base + adapter)| = {err:.2e}")
PY
  then echo "PASS merged logits"; else echo "FAIL merged logits"; failed=1; fi
else
  echo "FAIL logits"; failed=1
fi
expect_error merge_exists "already exists" "" "$bin" merge --model model --adapter straight/adapter --out merged

# bench step: its JSON, and the Chrome trace of the timed steps' ATen ops.
if "$bin" bench step --config "${base[@]}" --steps 2 --warmup 0 --gemm-gflops 100 --json --trace trace.json \
    >bench.json 2>bench.log; then
  if $py - <<'PY'
import json
r = json.load(open("bench.json"))
for k in ("step_ms", "tokens_per_s", "mfu", "peak_rss_mb", "forward_ms", "backward_ms", "optimizer_ms"):
    assert r[k] > 0, (k, r)
assert r["step_ms_min"] <= r["step_ms"] and r["gemm_gflops"] == 100, r
ev = json.load(open("trace.json"))
names = {e["name"] for e in ev}
assert {"aten::mm", "aten::embedding"} <= names, sorted(names)[:20]
assert all(e["dur"] >= 0 for e in ev if e.get("ph") == "X")
print(f"bench step: {r['step_ms']:.1f} ms; trace of {len(ev)} events")
PY
  then echo "PASS bench step"; else echo "FAIL bench step output"; failed=1; fi
else
  echo "FAIL bench step"; cat bench.log; failed=1
fi
expect_error bench_trace_dir "no-such-dir" "" "$bin" bench step --config "${base[@]}" --steps 1 --trace no-such-dir/t.json

exit $failed
