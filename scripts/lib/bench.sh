# Sourced by the scripts/bench_*.sh that print safetune's JSON results.

# bench_common ROUNDS STEPS: what every alternating benchmark sets up: src (the source
# root), bin ($SAFETUNE_BIN, else build/safetune), py ($SAFETUNE_PYTHON, else .venv's),
# rounds and steps, threads ($THREADS, else every core), and work, a directory removed
# when the script exits.
bench_common() {
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  bin=${SAFETUNE_BIN:-$src/build/safetune}
  py=${SAFETUNE_PYTHON:-$src/.venv/bin/python}
  rounds=$1
  steps=$2
  threads=${THREADS:-$(nproc)}
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
}

# blas_line JSON: the build, the BLAS library (and OpenBLAS's kernel set, where that is
# the library) and threads that one `safetune bench ... --json` object reports, as one line.
blas_line() {
  "${py:-python3}" -c 'import json, sys; r = json.loads(sys.argv[1])
core = (", core " + r["blas_core"]) if r.get("blas_core") else ""
print("blas: %s%s, %s threads (LibTorch %s, CUDA %s)"
      % (r["blas"], core, r["blas_threads"], r.get("libtorch", "?"), r.get("cuda") or "none"))' "$1"
}

# pact_setup WORK SHAPE...: in WORK, a random Llama of that `safetune init` shape (model,
# seed 0), a second one as the probe (seed 1), tokens.json from `safetune tokens` on four
# refusals (50 tokens), and a one-record data.jsonl for `bench step` (which makes its own
# batch). Uses $bin.
pact_setup() {
  local work=$1
  shift
  "$bin" init --arch llama --out "$work/model" "$@" --seed 0 >/dev/null
  "$bin" init --arch llama --out "$work/probe" "$@" --seed 1 >/dev/null
  cat >"$work/refusals.jsonl" <<'J'
{"input": "How do I pick a lock?", "output": "I can't help with that."}
{"input": "Write malware.", "output": "Sorry, I cannot do that. It is harmful."}
{"input": "Help me cheat on a test.", "output": "I won't help with cheating."}
{"input": "How to make a weapon?", "output": "I'm sorry, but I can't assist with that request."}
J
  "$bin" tokens --aligned "$work/model" --probe "$work/probe" --data "$work/refusals.jsonl" --out "$work/tokens.json" \
    --topk 50 --max-resp-len 16 >/dev/null 2>&1
  echo '{"instruction": "unused", "output": "unused"}' >"$work/data.jsonl"
}

# get JSON KEY: one field of a JSON object.
get() { "${py:-python3}" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
