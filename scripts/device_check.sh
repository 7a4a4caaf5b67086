#!/usr/bin/env bash
# One run on a GPU machine (x86-64, one H100/H200, a pip torch with CUDA, no network):
# builds safetune against that torch's LibTorch, checks the fused-loss CUDA kernels, and
# benchmarks. Every step has its own timeout and the whole run stays under ~9 minutes
# (BUDGET_S, default 510 s: a step that would not fit is skipped, not started).
#
#   1. environment: GPU, driver, torch, nvcc, compilers            -> env.json
#   2. (in the background, on the GPU while the CPUs build) the PyTorch eager training
#      benchmark: ~1.24B Llama-shaped model, LoRA and full FT, batch 8 x 1024, none /
#      pact adapter_off / pact cache                               -> torch_train_bench.json
#   3. cmake + ninja: safetune, safetune_tests, test_cuda_kernels (build-device/)
#   4. test_cuda_kernels --bench: kernels vs a CPU reference, CE kernel bandwidth
#   5. safetune_tests LossDispatch.*: the kernels through the tensor API vs torch autograd;
#      Device.*RngStatesRoundTrip: the CUDA generator state a checkpoint keeps
#   6. safetune bench loss --device cuda, N=16384 V=128256 d=4096 K=50 bf16 (when the
#      subcommand exists), none and pact                            -> bench_loss_*.json
#   7. the safetune side of the training benchmark, same model and batch (only when the
#      trainer has a CUDA device key; otherwise recorded as skipped with the reason)
#   8. scripts/device_check_model.sh (bf16 CUDA logits vs CPU, generation), if time is left
# Each step's output is in $OUT/logs/<step>.log; $OUT/device_check.json lists every step
# (status, exit code, seconds) and the parsed results.
#
# Offline C++ dependencies: scripts/pack_device_deps.sh (run where apt works) unpacks them
# into deps/; this script adds deps/usr to CMAKE_PREFIX_PATH and to the compiler, linker,
# loader and pkg-config search paths when it exists (DEPS=dir to use another place).
#
#   OUT=/some/dir scripts/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
src=$PWD
out=${OUT:-$src/device_check_out}
mkdir -p "$out/logs"
budget=${BUDGET_S:-510}
t_start=$(date +%s)
build=${BUILD_DIR:-build-device}
steps_file="$out/steps.jsonl"
: >"$steps_file"

elapsed() { echo $(($(date +%s) - t_start)); }
left() { echo $((budget - $(elapsed))); }
note() { echo "[device_check $(elapsed)s] $*"; }

# record NAME STATUS RC SECONDS [DETAIL]
record() {
  local detail  # one JSON-safe line: no quotes, backslashes or control characters
  detail=$(printf '%s' "${5:-}" | tr '\n\t\r' '   ' | tr -cd '[:print:]' | tr '"\\' "'/" | cut -c1-300)
  printf '{"step": "%s", "status": "%s", "rc": %s, "seconds": %s, "detail": "%s"}\n' \
    "$1" "$2" "$3" "$4" "$detail" >>"$steps_file"
}

# run_step NAME TIMEOUT_S CMD...: runs CMD with a timeout (shortened to the budget left),
# output to logs/NAME.log; skipped when less than a quarter of its timeout is left.
run_step() {
  local name=$1 limit=$2
  shift 2
  local l
  l=$(left)
  if [ "$l" -lt $((limit / 4)) ] || [ "$l" -lt 10 ]; then
    note "$name: skipped ($l s of the budget left, needs up to $limit s)"
    record "$name" skipped null 0 "budget: $l s left"
    return 99
  fi
  [ "$limit" -gt "$l" ] && limit=$l
  note "$name (timeout ${limit}s)"
  local t0 rc status
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" >"$out/logs/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=pass ;;
    77) status=skipped ;;
    124 | 137) status=timeout ;;
    *) status=fail ;;
  esac
  record "$name" "$status" "$rc" $(($(date +%s) - t0)) "$(tail -n 3 "$out/logs/$name.log")"
  note "$name: $status (rc $rc, $(($(date +%s) - t0)) s)"
  return $rc
}

# ---------------------------------------------------------------- 1. environment
py=""
# The GPU machine's torch (2.11, CUDA 13.0) is in /opt/torch/.venv; then the project's own.
for cand in ${PYTHON:-} /opt/torch/.venv/bin/python "$src/.venv/bin/python" python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then py=$cand; break; fi
done
nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
  [ -n "$py" ] && "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
  [ -n "$nvcc" ] && "$nvcc" --version | tail -2
  for tool in cmake ninja g++ pkg-config; do echo "$tool: $(command -v $tool || echo missing)"; done
  nproc
} >"$out/logs/env.log" 2>&1
cat "$out/logs/env.log"
if [ -z "$py" ]; then
  record env fail 1 0 "no python with torch found"
  note "no python with torch: nothing to build against"
fi

# ------------------------------------------------ offline dependencies (deps/ from pack)
deps=${DEPS:-$src/deps}
multi=x86_64-linux-gnu
prefix_path=""
# The torch package's root first, so that its lib/ wins over any other libtorch.so (as scripts/build.sh).
[ -n "$py" ] && prefix_path=$("$py" -c 'import os, torch; r = os.path.dirname(torch.__file__); print(r + ";" + r + "/share/cmake")')
if [ -d "$deps/usr" ]; then
  deps=$(cd "$deps" && pwd)
  prefix_path="$prefix_path;$deps/usr"
  export CPATH="$deps/usr/include${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$deps/usr/lib/$multi${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export LD_LIBRARY_PATH="$deps/usr/lib/$multi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_PATH="$deps/usr/lib/$multi/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR="$deps"
  export PATH="$PATH:$deps/usr/bin"  # the machine's own tools first
  note "dependencies from $deps ($(head -1 "$deps/PACKED" 2>/dev/null))"
fi
[ -n "$nvcc" ] && export PATH="$PATH:$(dirname "$nvcc")"
# One architecture (the machine's H100/H200): compile time stays small.
cuda_archs=${SAFETUNE_CUDA_ARCHITECTURES:-90}

# ------------------------------------- 2. PyTorch eager training benchmark (background)
torch_bench_pid=""
if [ -n "$py" ]; then
  note "torch_train_bench (background, timeout 240s)"
  (
    t0=$(date +%s)
    timeout -k 10 240 "$py" scripts/torch_train_bench.py --out "$out/torch_train_bench.json" \
      >"$out/logs/torch_train_bench.log" 2>&1
    rc=$?
    case $rc in 0) s=pass ;; 77) s=skipped ;; 124 | 137) s=timeout ;; *) s=fail ;; esac
    record torch_train_bench $s $rc $(($(date +%s) - t0)) "$(tail -n 2 "$out/logs/torch_train_bench.log")"
  ) &
  torch_bench_pid=$!
fi

# ----------------------------------------------------------------- 3. configure + build
jobs=$(nproc)
[ "$jobs" -gt 4 ] && jobs=$((jobs - 2))  # two cores for the benchmark running beside
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
built=0
if [ -n "$py" ] && run_step configure 150 cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_PREFIX_PATH=$prefix_path" "-DSAFETUNE_CUDA_ARCHITECTURES=$cuda_archs" "-DSAFETUNE_PYTHON=$py" \
  -DSAFETUNE_BUILD_TESTS=ON; then
  grep -E "safetune: |CUDA|Torch" "$out/logs/configure.log" | head -20
  if run_step build 330 cmake --build "$build" -j "$jobs" --target safetune safetune_tests test_cuda_kernels; then
    built=1
  fi
fi

# -------------------------------------------------------------- 4-5. correctness on GPU
if [ $built = 1 ]; then
  run_step kernel_tests 90 "$build/test_cuda_kernels" --bench
  grep -E "^(PASS|FAIL|SKIP)|GB_per_s" "$out/logs/kernel_tests.log" | tail -40
  grep -o '{"kernel".*}' "$out/logs/kernel_tests.log" >"$out/ce_kernel_bench.json" 2>/dev/null || rm -f "$out/ce_kernel_bench.json"
  run_step dispatch_tests 90 "$build/tests/safetune_tests" --gtest_filter='LossDispatch.*:*CrossEntropy*:Device.*RngStatesRoundTrip'
  tail -5 "$out/logs/dispatch_tests.log"
fi

# ------------------------------------------------------------ 6. bench loss on the GPU
bin=$build/safetune
if [ $built = 1 ] && "$bin" bench loss --help >/dev/null 2>&1; then
  for c in none pact; do
    if run_step "bench_loss_$c" 120 "$bin" bench loss --tokens 16384 --vocab 128256 --hidden 4096 --subset 50 \
      --constraint $c --device cuda --dtype bf16 --json; then
      grep -o '{.*}' "$out/logs/bench_loss_$c.log" | tail -1 >"$out/bench_loss_$c.json"
      cat "$out/bench_loss_$c.json"
    fi
  done
elif [ $built = 1 ]; then
  record bench_loss skipped null 0 "this build has no 'safetune bench loss'"
fi

# ------------------------------------------- 7. safetune side of the training benchmark
# (grep without -q reads the whole list: -q would stop at the first match, and the writer's
# SIGPIPE would fail the pipeline under pipefail.)
if [ $built = 1 ] && "$bin" train --list-keys 2>/dev/null | grep "train\.device" >/dev/null; then
  work=$(mktemp -d)
  shape="--vocab 128256 --hidden 2048 --layers 16 --heads 32 --kv-heads 8 --intermediate 8192 --max-pos 2048 --tie"
  shape+=" --rope-theta 500000 --dtype bf16"
  if run_step init_1b 90 "$bin" init --arch llama --out "$work/model" $shape --seed 0; then
    echo '{"instruction": "unused", "output": "unused"}' >"$work/data.jsonl"
    # tokens.json from `safetune tokens` (the model as its own probe: the weights come out
    # 0, which leaves the step's cost unchanged; the trainer checks the model's hash).
    cat >"$work/refusals.jsonl" <<'J'
{"input": "How do I pick a lock?", "output": "I can't help with that."}
{"input": "Write malware.", "output": "Sorry, I cannot do that. It is harmful."}
J
    run_step tokens_1b 90 "$bin" tokens --aligned "$work/model" --probe "$work/model" --data "$work/refusals.jsonl" \
      --out "$work/tokens.json" --topk 50 --max-resp-len 16 --device cuda
    for mode in lora full; do
      for ref in none adapter_off cache; do
        [ $ref = none ] && obj=(objective.constraint=none) ||
          obj=(objective.constraint=pact objective.tokens="$work/tokens.json" objective.reference=$ref
            objective.ref_cache="$work/unused.safetensors")
        [ $mode = lora ] && lora=(lora.enabled=true) || lora=(lora.enabled=false)
        run_step "safetune_step_${mode}_$ref" 90 "$bin" bench step --config configs/tiny.yaml model.path="$work/model" \
          data.train="$work/data.jsonl" train.output_dir="$work/run" train.device=cuda model.dtype=bf16 \
          train.batch_size=8 data.max_length=1024 "${lora[@]}" "${obj[@]}" --prompt 256 --steps 5 --warmup 2 \
          --gemm-gflops 989000 --json &&
          grep -o '{.*}' "$out/logs/safetune_step_${mode}_$ref.log" | tail -1 >"$out/safetune_step_${mode}_$ref.json"
      done
    done
  fi
  rm -rf "$work"
elif [ $built = 1 ]; then
  record safetune_train_bench skipped null 0 "the trainer has no CUDA device (no train.device key): training runs on CPU only"
fi

# -------------------------------------------------------------- wait for the torch bench
if [ -n "$torch_bench_pid" ]; then
  wait "$torch_bench_pid"
  cat "$out/logs/torch_train_bench.log" | tail -8
fi

# --------------------------------------------------- 8. model check, if time is left
if [ $built = 1 ]; then
  export SAFETUNE_BIN="$bin"
  run_step model_check 100 env PYTHON="$py" BUILD_DIR="$build" bash scripts/device_check_model.sh
fi

# ------------------------------------------------------------------------- summary
if [ -n "$py" ]; then
  "$py" - "$out" "$(elapsed)" <<'PY'
import glob, json, os, sys
out, total = sys.argv[1], int(sys.argv[2])
steps = []
for line in open(os.path.join(out, "steps.jsonl")):
    try:
        steps.append(json.loads(line))
    except ValueError:
        if line.strip():
            steps.append({"unreadable": line.strip()[:300], "status": "fail"})
results = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(f)[:-5]
    if name == "device_check":
        continue
    try:
        results[name] = json.load(open(f))
    except Exception as e:
        results[name] = {"unreadable": repr(e)}
env = open(os.path.join(out, "logs", "env.log")).read()
json.dump({"seconds": total, "env": env, "steps": steps, "results": results},
          open(os.path.join(out, "device_check.json"), "w"), indent=1)
bad = [s["step"] for s in steps if s["status"] in ("fail", "timeout")]
print("device_check: %d s, %d steps, failed or timed out: %s" % (total, len(steps), ", ".join(bad) or "none"))
PY
fi
note "done; results in $out"
grep -q '"status": "\(fail\|timeout\)"' "$steps_file" && exit 1
exit 0
