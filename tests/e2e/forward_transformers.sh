#!/usr/bin/env bash
# Forward parity against transformers itself: tiny random models of each family made in
# python with the family's config class and saved by transformers' save_pretrained (its
# current config format: rope_parameters, dtype, layer_types), read by `safetune logits`,
# against the logits of transformers' own *ForCausalLM class (tests/reference/
# hf_transformers.py, eager attention, fp32): max abs difference <= 1e-4.
# Cases: Llama with GQA, llama3 RoPE scaling and tied embeddings; Llama with linear scaling,
# attention and MLP biases; Mistral with a window shorter than the sequence; Qwen2 with a
# window on its upper layers; Qwen3 with q/k norms, head_dim != hidden/heads, attention
# bias and a window on upper layers; Qwen3 tied and stored in bfloat16; Gemma 2 with both
# soft-caps, query_pre_attn_scalar != head_dim and its alternating windows; Gemma 3 with
# its 5-local-1-global pattern and per-layer-type rope_parameters (a local base, linear
# scaling of the global one); Gemma 3 with layer_types written out and MQA; Phi-3 with its
# fused qkv_proj and gate_up_proj, GQA and a window, and tied and in bfloat16. 40 tokens,
# longer than every window. (No Gemma 3 case sets attn_logit_softcapping: transformers'
# Gemma3Attention keeps the field but does not apply it; safetune does.)
# Negative controls: a feature switched off in transformers' config must be noticed.
# What safetune cannot run (RoPE types, Gemma 3's bidirectional attention), written by
# transformers, is refused by name with exit 2.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
need_py_modules torch transformers safetensors
ref="$src/tests/reference/hf_transformers.py"
ids=1,5,9,200,257,3,4,5,6,7,8,9,10,11,12,100,101,102,103,104,105,255,254,0,1,2,3,77,78,79,80,81,82,83,84,85,86,87,88,89
failed=0
cases=() refusals=()
declare -A what

# One python process makes every model (batch lines "NAME COMMAND ARGS...").
case_() {  # name, arch, config JSON, [dtype]
  cases+=("$1")
  printf '%s make --arch %s --out %q --seed %s --config %q --dtype %s\n' "$1" "$2" "$work/$1" \
    "$(printf %s "$1" | cksum | cut -d' ' -f1)" "$(tr '\n' ' ' <<<"$3")" "${4:-float32}" >>"$work/make.batch"
}
refuse() {  # name, arch, config JSON, pattern safetune's error must contain
  refusals+=("$1"); what[$1]=$4
  printf '%s make --arch %s --out %q --seed 1 --config %q\n' "$1" "$2" "$work/$1" "$(tr '\n' ' ' <<<"$3")" \
    >>"$work/make.batch"
}

case_ llama_gqa_llama3_tied llama '{"tie_word_embeddings": true, "rope_parameters": {"rope_type": "llama3",
  "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
  "original_max_position_embeddings": 32}}'
case_ llama_linear_bias llama '{"num_key_value_heads": 4, "attention_bias": true, "mlp_bias": true,
  "rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 500000.0}}'
case_ mistral_window mistral '{"hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 2,
  "sliding_window": 6, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}'
case_ qwen2_window qwen2 '{"num_hidden_layers": 3, "num_key_value_heads": 1, "use_sliding_window": true,
  "sliding_window": 8, "max_window_layers": 1, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}'
case_ qwen3_qknorm_bias_window qwen3 '{"num_hidden_layers": 3, "hidden_size": 48, "head_dim": 16,
  "attention_bias": true, "use_sliding_window": true, "sliding_window": 8, "max_window_layers": 1}'
case_ qwen3_tied_bf16 qwen3 '{"head_dim": 32, "num_key_value_heads": 1, "tie_word_embeddings": true}' bfloat16
case_ gemma2_softcap_window gemma2 '{"num_hidden_layers": 4, "hidden_size": 48, "head_dim": 16,
  "query_pre_attn_scalar": 24, "sliding_window": 8, "attn_logit_softcapping": 2.0,
  "final_logit_softcapping": 3.0, "attention_bias": true}'
case_ gemma3_pattern_local_rope gemma3 '{"num_hidden_layers": 7, "hidden_size": 48, "head_dim": 16,
  "sliding_window": 8, "attention_bias": true, "rope_parameters": {
  "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1000000.0},
  "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}}'
case_ gemma3_layer_types_mqa gemma3 '{"num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1,
  "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8, "final_logit_softcapping": 3.0,
  "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}'
case_ phi3_fused_gqa_window phi3 '{"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 8,
  "num_key_value_heads": 2, "sliding_window": 8, "rope_parameters": {"rope_type": "default", "rope_theta": 500.0}}'
case_ phi3_tied_bf16 phi3 '{"num_key_value_heads": 4, "tie_word_embeddings": true}' bfloat16
refuse refused_phi3_longrope phi3 '{"max_position_embeddings": 64, "original_max_position_embeddings": 32,
  "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1, 1, 1, 1],
  "long_factor": [2, 2, 2, 2]}}' "longrope"
refuse refused_phi3_dropout phi3 '{"resid_pdrop": 0.1}' "resid_pdrop"
refuse refused_yarn llama '{"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
  "original_max_position_embeddings": 64}}' "yarn"
refuse refused_dynamic llama '{"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}}' \
  "dynamic"
refuse refused_gemma3_bidirectional gemma3 '{"head_dim": 16, "use_bidirectional_attention": true}' \
  "use_bidirectional_attention"

"$py" "$ref" batch "$work/make.batch" >"$work/make.out" 2>"$work/make.err" || { cat "$work/make.err"; fail "hf_transformers.py batch"; }
made() { grep -q "^$1	PASS	" "$work/make.out"; }

# safetune's logits of every model, then one python process compares them all; negative
# controls: the same weights under a config with one feature switched off must NOT match.
: >"$work/compare.batch"
for name in "${cases[@]}"; do
  if ! made "$name"; then
    echo "FAIL $name: transformers could not make the model: $(grep "^$name	" "$work/make.out" | cut -f3)"
    failed=1; continue
  fi
  if ! "$bin" logits --model "$work/$name" --ids "$ids" --out "$work/$name/logits.safetensors" 2>"$work/$name.err"; then
    echo "FAIL $name: safetune logits failed: $(cat "$work/$name.err")"; failed=1; continue
  fi
  printf '%s logits --model %q --ids %s --compare %q --tol 1e-4\n' "$name" "$work/$name" "$ids" \
    "$work/$name/logits.safetensors" >>"$work/compare.batch"
done
negative() {  # case, description, python expression editing config dict c
  local dir="$work/neg${#what[@]}"
  [ -f "$work/$1/logits.safetensors" ] || return
  mkdir -p "$dir"
  cp "$work/$1/model.safetensors" "$dir/"
  "$py" -c "import json,sys; c=json.load(open(sys.argv[1])); $3; json.dump(c, open(sys.argv[2],'w'))" \
    "$work/$1/config.json" "$dir/config.json" || fail "editing $1's config"
  what[${dir##*/}]=$2
  printf '%s logits --model %q --ids %s --compare %q --expect-differ\n' "${dir##*/}" "$dir" "$ids" \
    "$work/$1/logits.safetensors" >>"$work/compare.batch"
}
negative llama_gqa_llama3_tied "dropping llama3 RoPE scaling" "c['rope_parameters']={'rope_type': 'default', 'rope_theta': 10000.0}"
negative llama_linear_bias "the default RoPE base" "c['rope_parameters']['rope_theta']=10000.0"
negative mistral_window "dropping the sliding window" "c['sliding_window']=None"
negative qwen2_window "sliding the lowest layer too" "c['layer_types']=['sliding_attention']*3"
negative gemma2_softcap_window "dropping attention soft-capping" "c['attn_logit_softcapping']=None"
negative gemma2_softcap_window "scaling by head_dim" "c['query_pre_attn_scalar']=16"
negative gemma3_pattern_local_rope "the global RoPE base on local layers" \
  "c['rope_parameters']['sliding_attention']['rope_theta']=1000000.0"
negative gemma3_pattern_local_rope "no scaling of the global RoPE" \
  "c['rope_parameters']['full_attention']={'rope_type': 'default', 'rope_theta': 1000000.0}"
negative gemma3_layer_types_mqa "another layer pattern" "c['layer_types']=['full_attention']*3"
negative phi3_fused_gqa_window "dropping Phi-3's window" "c['sliding_window']=None"

"$py" "$ref" batch "$work/compare.batch" >"$work/compare.out" 2>"$work/compare.err" ||
  { cat "$work/compare.err"; fail "hf_transformers.py batch"; }
[ "$(wc -l <"$work/compare.out")" -eq "$(wc -l <"$work/compare.batch")" ] || fail "hf_transformers.py left cases out"
while IFS=$'\t' read -r name verdict msg; do
  label=$name
  [ -n "${what[$name]:-}" ] && label="negative control: ${what[$name]} is detected"
  [ "$verdict" = PASS ] || failed=1
  echo "$verdict $label: $msg"
done <"$work/compare.out"

# Refused by name: exit 2, the field in the message.
for name in "${refusals[@]}"; do
  made "$name" || { echo "FAIL $name: transformers could not make the model"; failed=1; continue; }
  "$bin" logits --model "$work/$name" --ids 1,2,3 --out "$work/$name.safetensors" 2>"$work/$name.err"
  rc=$?
  if [ $rc -eq 2 ] && grep -qF -- "${what[$name]}" "$work/$name.err"; then
    echo "PASS $name: $(cat "$work/$name.err")"
  else
    echo "FAIL $name: exit $rc, expected 2 with '${what[$name]}': $(cat "$work/$name.err")"; failed=1
  fi
done

if [ $failed -ne 0 ]; then echo "forward parity with transformers: FAILED"; exit 1; fi
echo "forward parity with transformers: all ${#cases[@]} cases within 1e-4"
