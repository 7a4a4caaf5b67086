#!/usr/bin/env bash
# LoRA adapters against peft itself (tests/reference/hf_transformers.py: transformers'
# *ForCausalLM under peft's PeftModel, fp32, eager attention):
#  (a) adapters `safetune train` wrote (run_dir/adapter) on models `safetune init` wrote:
#      peft loads them, and its logits equal `safetune logits --adapter` within 1e-5
#      (Llama with q/v, Qwen3 with every projection);
#  (b) adapters peft saved (get_peft_model, random nonzero A and B, save_pretrained) on
#      models transformers saved: `safetune logits --adapter` equals peft's within 1e-5
#      (Qwen3 with every projection, Gemma 3 with the attention projections, Phi-3 with
#      its fused qkv_proj and gate_up_proj);
#  (c) `safetune merge` of each equals peft's merge_and_unload, every weight within 1e-5.
# Controls: the base models' logits differ from peft's adapted ones (the adapters matter),
# and safetune with an adapter whose lora_alpha is doubled differs from peft.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
need_py_modules torch transformers peft safetensors
ref="$src/tests/reference/hf_transformers.py"
cd "$work" || exit 1
ids=1,5,9,200,257,3,4,5,6,7,8,9,10,11,12,100,101,102,103,104,105,255,254,0,1,2,3,77,78,79
all_modules=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
failed=0
declare -A what

# (a) Adapters safetune trained.
for i in $(seq 0 15); do
  printf '{"instruction": "Repeat the word number %d", "output": "word %d word %d"}\n' $((i % 8)) $((i % 8)) $((i % 8))
done >train.jsonl
small=(--vocab 300 --hidden 32 --layers 2 --heads 4 --kv-heads 2 --intermediate 64 --init-std 0.1 --init-test)
"$bin" init --arch llama --out llama "${small[@]}" --seed 3 >/dev/null || fail "init llama"
"$bin" init --arch qwen3 --out qwen3 "${small[@]}" --head-dim 16 --tie --seed 4 >/dev/null || fail "init qwen3"
train=("$src/configs/tiny.yaml" data.train=train.jsonl train.max_steps=8 train.save_every=0 train.threads=1
  optim.lr=2e-2)
"$bin" train "${train[@]}" model.path=llama train.output_dir=run_llama >run_llama.log 2>&1 ||
  { cat run_llama.log; fail "train llama"; }
"$bin" train "${train[@]}" model.path=qwen3 model.chat_template=qwen3 data.max_length=128 "lora.target_modules=[$all_modules]" \
  train.output_dir=run_qwen3 >run_qwen3.log 2>&1 || { cat run_qwen3.log; fail "train qwen3"; }

# (b) Models transformers saved and adapters peft saved, in one python process.
cat >make.batch <<'B'
hf_qwen3 make --arch qwen3 --out hf_qwen3 --seed 5 --std 0.1 --config '{"head_dim": 16, "tie_word_embeddings": true}'
hf_gemma3 make --arch gemma3 --out hf_gemma3 --seed 6 --std 0.1 --config '{"num_hidden_layers": 3, "head_dim": 16, "sliding_window": 8, "layer_types": ["sliding_attention", "sliding_attention", "full_attention"]}'
peft_qwen3 adapter --model hf_qwen3 --out peft_qwen3 --seed 7 --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --r 4 --alpha 8
peft_gemma3 adapter --model hf_gemma3 --out peft_gemma3 --seed 8 --targets q_proj,k_proj,v_proj,o_proj --r 8 --alpha 4
hf_phi3 make --arch phi3 --out hf_phi3 --seed 9 --std 0.1 --config '{"num_key_value_heads": 2}'
peft_phi3 adapter --model hf_phi3 --out peft_phi3 --seed 10 --targets qkv_proj,o_proj,gate_up_proj,down_proj --r 4 --alpha 8
B
"$py" "$ref" batch make.batch >make.out 2>make.err || { cat make.err; fail "hf_transformers.py batch"; }
grep -v "	PASS	" make.out && fail "transformers / peft could not make the models"

# safetune's side of every comparison, then one python process for peft's.
: >compare.batch
compare() {  # name, model, adapter: logits with the adapter
  what[$1]="logits of $2 + $3"
  "$bin" logits --model "$2" --adapter "$3" --ids "$ids" --out "$1.safetensors" 2>"$1.err" ||
    { echo "FAIL $1: safetune logits: $(cat "$1.err")"; failed=1; return; }
  echo "$1 logits --model $2 --adapter $3 --ids $ids --compare $1.safetensors --tol 1e-5" >>compare.batch
}
merged() {  # name, model, adapter: safetune merge vs merge_and_unload
  what[$1]="merge of $2 + $3"
  "$bin" merge --model "$2" --adapter "$3" --out "$1" >"$1.log" 2>&1 ||
    { echo "FAIL $1: safetune merge: $(cat "$1.log")"; failed=1; return; }
  echo "$1 merge --model $2 --adapter $3 --compare $1 --tol 1e-5" >>compare.batch
}
base_differs() {  # name, model, adapter: the base model alone must not give the adapted logits
  what[$1]="control: $2 without $3 differs from peft with it"
  "$bin" logits --model "$2" --ids "$ids" --out "$1.safetensors" 2>"$1.err" ||
    { echo "FAIL $1: safetune logits: $(cat "$1.err")"; failed=1; return; }
  echo "$1 logits --model $2 --adapter $3 --ids $ids --compare $1.safetensors --tol 1e-4 --expect-differ" >>compare.batch
}
compare trained_llama llama run_llama/adapter
compare trained_qwen3 qwen3 run_qwen3/adapter
compare peft_qwen3 hf_qwen3 peft_qwen3
compare peft_gemma3 hf_gemma3 peft_gemma3
compare peft_phi3 hf_phi3 peft_phi3
merged merged_trained_llama llama run_llama/adapter
merged merged_trained_qwen3 qwen3 run_qwen3/adapter
merged merged_peft_qwen3 hf_qwen3 peft_qwen3
merged merged_peft_gemma3 hf_gemma3 peft_gemma3
merged merged_peft_phi3 hf_phi3 peft_phi3
base_differs base_llama llama run_llama/adapter
base_differs base_hf_qwen3 hf_qwen3 peft_qwen3
# Control: the peft adapter with lora_alpha doubled must not give peft's logits.
cp -r peft_qwen3 peft_qwen3_alpha
"$py" -c "import json,sys; c=json.load(open(sys.argv[1])); c['lora_alpha']*=2; json.dump(c, open(sys.argv[1],'w'))" \
  peft_qwen3_alpha/adapter_config.json || fail "editing adapter_config.json"
what[alpha]="control: safetune with lora_alpha doubled differs from peft"
if "$bin" logits --model hf_qwen3 --adapter peft_qwen3_alpha --ids "$ids" --out alpha.safetensors 2>alpha.err; then
  echo "alpha logits --model hf_qwen3 --adapter peft_qwen3 --ids $ids --compare alpha.safetensors --tol 1e-4 --expect-differ" \
    >>compare.batch
else
  echo "FAIL alpha: safetune logits: $(cat alpha.err)"; failed=1
fi

"$py" "$ref" batch compare.batch >compare.out 2>compare.err || { cat compare.err; fail "hf_transformers.py batch"; }
[ "$(wc -l <compare.out)" -eq "$(wc -l <compare.batch)" ] || fail "hf_transformers.py left cases out"
while IFS=$'\t' read -r name verdict msg; do
  [ "$verdict" = PASS ] || failed=1
  echo "$verdict $name (${what[$name]}): $msg"
done <compare.out

if [ $failed -ne 0 ]; then echo "adapters vs peft: FAILED"; exit 1; fi
echo "adapters vs peft: logits and merges within 1e-5 both ways"
