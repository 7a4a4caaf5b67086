#!/usr/bin/env bash
# Forward parity: safetune's logits against an independent PyTorch implementation of the
# HF forward (tests/reference/hf_forward.py, hand-written, on the project's torch), from
# the same config.json + model.safetensors as `safetune init` writes them, max abs logit
# difference <= 1e-4 in fp32. (forward_transformers.sh checks against transformers'
# own classes on models transformers writes.)
# Cases: Llama with GQA + llama3 RoPE scaling + tied embeddings; Llama with linear scaling
# and q/k/v/o bias; Qwen2 with q/k/v bias and a sliding window on upper layers; Mistral
# with a sliding window shorter than the sequence; bf16-stored weights; Qwen3 with q/k
# norms, an explicit head_dim, attention bias and a window on upper layers; Gemma 2 with
# both soft-caps, query_pre_attn_scalar != head_dim and its alternating windows; Gemma 3
# with its 5-local-1-global pattern, local RoPE base, q/k norms and linear scaling of the
# global RoPE. Every case has GQA where it can, random norm weights and biases, and 40
# tokens, longer than the windows. Negative controls check that the comparison notices a
# real difference (a feature switched off in the reference's config).
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
need_py_modules torch numpy
ref="$src/tests/reference/hf_forward.py"

# 40 tokens: longer than the sliding windows below, and within the vocab of every case.
ids=1,5,9,200,257,3,4,5,6,7,8,9,10,11,12,100,101,102,103,104,105,255,254,0,1,2,3,77,78,79,80,81,82,83,84,85,86,87,88,89
failed=0

check() {  # name, init flags...
  local name=$1; shift
  local dir="$work/$name"
  if ! "$bin" init --out "$dir" --init-std 0.2 --init-test "$@" >/dev/null; then
    echo "FAIL $name: safetune init failed"; failed=1; return
  fi
  if ! "$bin" logits --model "$dir" --ids "$ids" --out "$dir/logits.safetensors"; then
    echo "FAIL $name: safetune logits failed"; failed=1; return
  fi
  local verdict
  verdict=$("$py" "$ref" --model "$dir" --ids "$ids" --compare "$dir/logits.safetensors" --tol 1e-4)
  local rc=$?
  if [ $rc -eq 0 ]; then echo "PASS $name: $verdict"; else echo "FAIL $name: $verdict"; failed=1; fi
}

check llama_gqa_llama3_tied --arch llama --heads 4 --kv-heads 2 --tie --rope-scaling llama3 \
  --rope-factor 8 --rope-original-max-pos 32 --seed 1
check llama_linear_bias --arch llama --heads 4 --kv-heads 4 --rope-scaling linear --rope-factor 4 \
  --attention-bias --seed 2
check qwen2_bias_window --arch qwen2 --layers 3 --heads 4 --kv-heads 1 --sliding-window 8 \
  --max-window-layers 1 --rope-theta 1000000 --seed 3
check mistral_window --arch mistral --heads 8 --kv-heads 2 --hidden 64 --sliding-window 6 --seed 4
check llama_bf16 --arch llama --dtype bf16 --heads 4 --kv-heads 2 --seed 5
check qwen2_f16_tied --arch qwen2 --dtype f16 --tie --heads 2 --kv-heads 2 --seed 6
check qwen3_qknorm_bias_window --arch qwen3 --layers 3 --hidden 48 --heads 4 --kv-heads 2 --head-dim 16 \
  --attention-bias --sliding-window 8 --max-window-layers 1 --rope-theta 1000000 --seed 7
check qwen3_tied --arch qwen3 --heads 4 --kv-heads 1 --head-dim 32 --tie --seed 8
check gemma2_softcap_window --arch gemma2 --layers 4 --hidden 48 --heads 4 --kv-heads 2 --head-dim 16 \
  --query-pre-attn-scalar 24 --sliding-window 8 --attn-softcap 2 --final-softcap 3 --attention-bias --seed 9
check gemma3_pattern_local_rope --arch gemma3 --layers 7 --hidden 48 --heads 4 --kv-heads 2 --head-dim 16 \
  --sliding-window 8 --rope-local-base 100 --rope-scaling linear --rope-factor 4 --attention-bias --seed 10
check gemma3_softcap_bf16 --arch gemma3 --layers 3 --heads 2 --kv-heads 1 --sliding-window 8 \
  --sliding-window-pattern 3 --attn-softcap 2 --dtype bf16 --seed 11

# Negative controls: the same logits against the reference of a model with one feature
# switched off must NOT match, or the comparisons above prove nothing.
negative() {  # case, what, python expression editing config dict c
  local src_dir="$work/$1" dir="$work/neg_$1"
  [ -f "$src_dir/logits.safetensors" ] || return
  mkdir -p "$dir"
  cp "$src_dir/model.safetensors" "$dir/"
  "$py" -c "import json,sys; c=json.load(open(sys.argv[1])); $3; json.dump(c, open(sys.argv[2],'w'))" \
    "$src_dir/config.json" "$dir/config.json"
  if "$py" "$ref" --model "$dir" --ids "$ids" --compare "$src_dir/logits.safetensors" --tol 1e-4 >/dev/null; then
    echo "FAIL negative control: $2 went unnoticed"; failed=1
  else
    echo "PASS negative control: $2 is detected"
  fi
}
negative llama_gqa_llama3_tied "dropping llama3 RoPE scaling" "c['rope_scaling']=None"
negative mistral_window "dropping the sliding window" "c['sliding_window']=None"
negative qwen2_bias_window "sliding the lowest layer too" "c['max_window_layers']=0"
negative qwen3_qknorm_bias_window "dropping Qwen3's window" "c['use_sliding_window']=False"
negative gemma2_softcap_window "dropping attention soft-capping" "c['attn_logit_softcapping']=None"
negative gemma2_softcap_window "dropping final-logit soft-capping" "c['final_logit_softcapping']=None"
negative gemma2_softcap_window "scaling by head_dim" "c['query_pre_attn_scalar']=16"
negative gemma3_pattern_local_rope "the global RoPE base on local layers" "c['rope_local_base_freq']=c['rope_theta']"
negative gemma3_pattern_local_rope "a wider window" "c['sliding_window']=9"

if [ $failed -ne 0 ]; then echo "forward parity: FAILED"; exit 1; fi
echo "forward parity: all cases within 1e-4"
