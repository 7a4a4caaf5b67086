#!/usr/bin/env bash
# Bad model inputs to `safetune logits` / `generate` / `init`: each must fail with exit
# code 2, a one-line error that names the problem, and no output file left behind.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${SAFETUNE_SOURCE_DIR:-$here/../..}
bin=${SAFETUNE_BIN:-$src/build/safetune}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
failed=0

expect_error() {  # name, pattern that the message must contain, command...
  local name=$1 pattern=$2; shift 2
  local out="$work/out.safetensors"
  rm -f "$out"
  "$@" >"$work/stdout" 2>"$work/stderr"
  local rc=$? lines
  lines=$(wc -l <"$work/stderr")
  if [ $rc -ne 2 ]; then echo "FAIL $name: exit $rc, expected 2"; cat "$work/stderr"; failed=1; return; fi
  if [ "$lines" -ne 1 ]; then echo "FAIL $name: $lines lines on stderr, expected 1"; cat "$work/stderr"; failed=1; return; fi
  if ! grep -qF -- "$pattern" "$work/stderr"; then echo "FAIL $name: message lacks '$pattern':"; cat "$work/stderr"; failed=1; return; fi
  if [ -e "$out" ]; then echo "FAIL $name: output written anyway"; failed=1; return; fi
  echo "PASS $name: $(cat "$work/stderr")"
}

"$bin" init --arch llama --out "$work/good" >/dev/null || { echo "FAIL: init"; exit 1; }
"$bin" init --arch llama --out "$work/small" --intermediate 100 >/dev/null || { echo "FAIL: init"; exit 1; }

# config.json says intermediate 100, the weights are 172 wide.
mkdir "$work/shape"; cp "$work/good/model.safetensors" "$work/shape/"; cp "$work/small/config.json" "$work/shape/"
expect_error wrong_shape "'model.layers.0.mlp.gate_proj.weight' has shape [172, 64], expected [100, 64]" \
  "$bin" logits --model "$work/shape" --ids 1,2,3 --out "$work/out.safetensors"

mkdir "$work/noconfig"; cp "$work/good/model.safetensors" "$work/noconfig/"
expect_error missing_config "config.json" "$bin" logits --model "$work/noconfig" --ids 1,2,3 --out "$work/out.safetensors"

mkdir "$work/noweights"; cp "$work/good/config.json" "$work/noweights/"
expect_error missing_weights "model.safetensors" "$bin" logits --model "$work/noweights" --ids 1,2,3 --out "$work/out.safetensors"

expect_error missing_dir "not found" "$bin" logits --model "$work/nothing" --ids 1,2,3 --out "$work/out.safetensors"

mkdir "$work/arch"; cp "$work/good/model.safetensors" "$work/arch/"
sed -e 's/LlamaForCausalLM/GPT2LMHeadModel/' -e 's/"model_type": "llama"/"model_type": "gpt2"/' \
  "$work/good/config.json" >"$work/arch/config.json"
expect_error unsupported_arch "GPT2LMHeadModel" "$bin" logits --model "$work/arch" --ids 1,2,3 --out "$work/out.safetensors"

mkdir "$work/trunc"; cp "$work/good/config.json" "$work/trunc/"
head -c 5000 "$work/good/model.safetensors" >"$work/trunc/model.safetensors"
expect_error truncated_safetensors "model.safetensors" "$bin" logits --model "$work/trunc" --ids 1,2,3 --out "$work/out.safetensors"

expect_error id_out_of_vocab "token id 512" "$bin" logits --model "$work/good" --ids 1,512 --out "$work/out.safetensors"
expect_error bad_ids "--ids" "$bin" generate --model "$work/good" --ids 1,x
expect_error init_nonempty "not empty" "$bin" init --arch llama --out "$work/good"
expect_error init_bad_arch "gpt2" "$bin" init --arch gpt2 --out "$work/new"
expect_error init_bad_dtype "unsupported dtype" "$bin" init --arch llama --out "$work/new2" --dtype int8
[ -e "$work/new" ] || [ -e "$work/new2" ] || [ -e "$work/new.tmp" ] && { echo "FAIL: init left a directory"; failed=1; }

if [ $failed -ne 0 ]; then echo "bad model inputs: FAILED"; exit 1; fi
echo "bad model inputs: all rejected cleanly"
