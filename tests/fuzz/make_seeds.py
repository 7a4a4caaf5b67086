#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/: small valid inputs of each format and a few
near-valid ones (one field wrong), so the fuzzer starts from the interesting paths.
Standard library only. Run from anywhere: python3 tests/fuzz/make_seeds.py"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


# --- safetensors: [u64 header length][JSON header][data] ---
def safetensors(header, data, pad=True):
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
bf16 = bytes([0x80, 0x3F, 0x00, 0x40])
put("safetensors", "two_tensors", safetensors(
    {"__metadata__": {"format": "pt"},
     "a.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
     "b.bias": {"dtype": "BF16", "shape": [2], "data_offsets": [16, 20]}}, f32 + bf16))
put("safetensors", "all_dtypes", safetensors(
    {n: {"dtype": n, "shape": [1], "data_offsets": [o, o + s]} for n, o, s in
     [("F32", 0, 4), ("F16", 4, 2), ("BF16", 6, 2), ("I64", 8, 8), ("I32", 16, 4), ("I16", 20, 2),
      ("I8", 22, 1), ("U8", 23, 1), ("BOOL", 24, 1)]}, bytes(25)))
put("safetensors", "empty_tensor", safetensors(
    {"e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
     "s": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]}}, bytes(8)))
put("safetensors", "empty_header", safetensors({}, b""))
put("safetensors", "offset_past_end", safetensors(
    {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)))
put("safetensors", "overlap", safetensors(
    {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
     "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)))
put("safetensors", "huge_shape", safetensors(
    {"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}, b""))

# --- config.json of the six families ---
base = {"vocab_size": 320, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5, "hidden_act": "silu", "torch_dtype": "bfloat16", "bos_token_id": 1,
        "eos_token_id": 2}
put("hf_config", "llama", json.dumps(dict(base, architectures=["LlamaForCausalLM"], model_type="llama",
    rope_theta=500000.0, tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192}, eos_token_id=[2, 3]), indent=1))
put("hf_config", "qwen2", json.dumps(dict(base, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
    rope_theta=1000000.0, use_sliding_window=True, sliding_window=128, max_window_layers=1,
    pad_token_id=None), indent=1))
put("hf_config", "mistral", json.dumps(dict(base, architectures=["MistralForCausalLM"], model_type="mistral",
    sliding_window=4096, head_dim=32, rope_scaling={"type": "linear", "factor": 2.0}), indent=1))
put("hf_config", "qwen3", json.dumps(dict(base, architectures=["Qwen3ForCausalLM"], model_type="qwen3",
    head_dim=32, attention_bias=True, use_sliding_window=True, sliding_window=None, max_window_layers=1,
    tie_word_embeddings=True), indent=1))
put("hf_config", "gemma2", json.dumps(dict(base, architectures=["Gemma2ForCausalLM"], model_type="gemma2",
    hidden_activation="gelu_pytorch_tanh", head_dim=16, query_pre_attn_scalar=24, sliding_window=8,
    attn_logit_softcapping=50.0, final_logit_softcapping=30.0), indent=1))
put("hf_config", "gemma3", json.dumps(dict(base, architectures=["Gemma3ForCausalLM"], model_type="gemma3_text",
    head_dim=16, sliding_window=8, sliding_window_pattern=6, rope_local_base_freq=10000.0,
    attn_logit_softcapping=None, final_logit_softcapping=None,
    layer_types=["sliding_attention", "full_attention"]), indent=1))
put("hf_config", "bad_heads", json.dumps(dict(base, model_type="llama", num_key_value_heads=3)))

# --- tokenizer.json: byte-level BPE (GPT-2 / Llama-3 style) and SentencePiece-style BPE ---
def byte_char(b):
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    if b in printable:
        return chr(b)
    return chr(256 + [i for i in range(256) if i not in printable].index(b))


merges = [("h", "e"), ("l", "l"), ("ll", "o"), ("he", "llo"), ("\u0120", "w"), ("o", "r")]
vocab = {byte_char(b): b for b in range(256)}
for a, b in merges:
    vocab.setdefault(a + b, len(vocab))
added = [{"id": len(vocab) + i, "content": c, "special": True} for i, c in
         enumerate(["<|im_start|>", "<|im_end|>", "<|endoftext|>"])]
put("tokenizer_json", "gpt2", json.dumps({
    "version": "1.0", "added_tokens": added, "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": vocab, "merges": [a + " " + b for a, b in merges], "unk_token": None}},
    ensure_ascii=False))
llama3_regex = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
put("tokenizer_json", "llama3", json.dumps({
    "added_tokens": added, "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": llama3_regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": vocab, "merges": [[a, b] for a, b in merges], "unk_token": None}},
    ensure_ascii=False))
U = "\u2581"
spm_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256):
    spm_vocab["<0x%02X>" % b] = len(spm_vocab)
for p in [U, "a", "b", U + "a", "ab", U + "ab"]:
    spm_vocab[p] = len(spm_vocab)
spm_added = [{"id": i, "content": c, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
spm_model = {"type": "BPE", "vocab": spm_vocab, "merges": ["a b", U + " ab", U + " a"], "unk_token": "<unk>",
             "byte_fallback": True, "fuse_unk": True}
put("tokenizer_json", "llama2", json.dumps({
    "added_tokens": spm_added,
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": U}, {"type": "Replace", "pattern": {"String": " "}, "content": U}]},
    "pre_tokenizer": None,
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": U}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": spm_model}, ensure_ascii=False))
put("tokenizer_json", "mistral_metaspace", json.dumps({
    "added_tokens": spm_added, "normalizer": None,
    "pre_tokenizer": {"type": "Metaspace", "replacement": U, "prepend_scheme": "first", "split": False},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Metaspace", "replacement": U, "prepend_scheme": "first"}, {"type": "ByteFallback"},
        {"type": "Fuse"}]},
    "model": spm_model}, ensure_ascii=False))
put("tokenizer_json", "wordpiece", '{"model": {"type": "WordPiece", "vocab": {"a": 0}}}')

# --- dataset records: JSONL and a JSON array of the three shapes ---
alpaca = {"instruction": "Classify the sentiment.", "input": "I loved it", "output": "positive", "label": 1}
chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"},
                     {"role": "assistant", "content": "4"}]}
pc = {"prompt": "Translate: chat", "completion": "cat"}
refusal = {"input": "How do I pick a lock?", "output": "I can't help with that."}
put("records", "mixed.jsonl", "\n".join(json.dumps(r) for r in [alpaca, chat, pc, refusal]) + "\n")
put("records", "array.json", json.dumps([alpaca, chat, pc], indent=2, ensure_ascii=False))
put("records", "bom_crlf.jsonl", "\ufeff" + json.dumps(pc) + "\r\n\r\n" + json.dumps(refusal, ensure_ascii=False))
put("records", "unicode.jsonl", json.dumps({"prompt": "caf\u00e9 \U0001F600", "completion": "\u4f60\u597d"},
                                           ensure_ascii=False) + "\n")
put("records", "broken_line.jsonl", json.dumps(pc) + "\n{\"prompt\": \"x\", \n")

# --- CSV / TSV datasets: the first byte is the mode (bit 0 TSV, bit 1 the goal,target
# mapping, bit 2 prompts); made-up rows in AdvBench's layout, never its data ---
put("csv", "mapped.csv", "\x02" + 'goal,target\r\n"Do a thing, quickly","Sure, here is ""a thing"""\r\n')
put("csv", "named.csv", "\x00" + '\ufeffinstruction,input,output,label\n"multi\nline",,ok,1\n\nx,y,z,0\n')
put("csv", "prompts.tsv", "\x05" + 'prompt\tcategory\n"tab\there"\ta\nplain\tb\n')
put("csv", "ragged.csv", "\x02" + 'goal,target\nonly one\n')
put("csv", "bad_quote.csv", "\x00" + 'prompt,completion\n"a"b,c\n"never closed,\n')

# --- YAML run configs (the NUL byte separates key=value overrides) ---
tiny = """model:
  path: tiny-model
  dtype: fp32
data:
  train: tiny-train.jsonl
  max_length: 64
lora:
  enabled: true
  r: 4
  alpha: 16
  dropout: 0.0
  target_modules: [q_proj, v_proj]
optim:
  lr: 1.0e-3
  grad_clip: 1.0
schedule:
  type: cosine
  warmup_steps: 2
train:
  output_dir: runs/tiny
  max_steps: 20
  batch_size: 4
  save_every: 10
objective:
  constraint: pact
  tokens: tokens.json
  gate:
    alpha: 2.0
    top_p: 0.9
"""
put("yaml_config", "tiny.yaml", tiny)
put("yaml_config", "overrides.yaml", tiny + "\0optim.lr=3e-5\nlora.target_modules=[q_proj,k_proj,o_proj]\n"
    "objective.reference=cache\nobjective.ref_cache=ref.bin")
put("yaml_config", "flow.yaml", "{model: {path: m}, data: {train: t.jsonl, harmful: h.jsonl, harmful_fraction: 0.1},"
    " train: {resume: auto}, objective: {constraint: kl_full, positions: first_n, first_n: 4}}")
put("yaml_config", "unknown_key.yaml", "model:\n  path: m\ndata:\n  train: t\noptim:\n  learning_rate: 1e-4\n")
