"""Writes the broken inputs of cases.txt into the current directory, from a good tiny model
in ./good (made by `safetune init`). Each broken model is a copy of ./good with one thing
wrong; plain Python, byte by byte, so the files are exactly as described."""
import json
import os
import shutil
import struct


def read_st(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def st_bytes(header, data, header_len=None):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h) if header_len is None else header_len) + h + data


def model_copy(name, weights=None, config=None, tokenizer=None):
    """./name = ./good with model.safetensors, config.json or tokenizer.json replaced (bytes or dict)."""
    shutil.copytree("good", name)
    for file, content in (("model.safetensors", weights), ("config.json", config), ("tokenizer.json", tokenizer)):
        if content is None:
            continue
        with open(os.path.join(name, file), "wb") as f:
            f.write(content if isinstance(content, bytes) else json.dumps(content, indent=1).encode())


def write(path, content):
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())


header, data = read_st("good/model.safetensors")
tensors = [k for k in header if k != "__metadata__"]
first = sorted(tensors, key=lambda k: header[k]["data_offsets"][0])
config = json.load(open("good/config.json"))
tokenizer = json.load(open("good/tokenizer.json"))
raw = open("good/model.safetensors", "rb").read()


def edited(fn):
    h = json.loads(json.dumps(header))
    fn(h)
    return h


# --- safetensors
model_copy("st_too_small", weights=raw[:5])
model_copy("st_header_cut", weights=raw[:8 + 100])                       # header says more than there is
model_copy("st_huge_header", weights=struct.pack("<Q", 1 << 62) + raw[8:])
model_copy("st_lying_length", weights=st_bytes(header, data, header_len=len(st_bytes(header, b"")) - 8 + 64))
model_copy("st_not_json", weights=struct.pack("<Q", 16) + b"{not json at all" + data)
model_copy("st_past_end", weights=st_bytes(header, data[:-1024]))        # last tensors cut off
model_copy("st_overlap", weights=st_bytes(edited(lambda h: h[first[1]].__setitem__(
    "data_offsets", [h[first[0]]["data_offsets"][0], h[first[0]]["data_offsets"][0] +
                     h[first[1]]["data_offsets"][1] - h[first[1]]["data_offsets"][0]])), data))
model_copy("st_bad_dtype", weights=st_bytes(edited(lambda h: h[first[0]].__setitem__("dtype", "Q7")), data))
model_copy("st_shape_bytes", weights=st_bytes(edited(lambda h: h[first[0]]["shape"].__setitem__(0, 3)), data))
model_copy("st_shape_overflow", weights=st_bytes(edited(lambda h: h[first[0]].__setitem__(
    "shape", [1 << 40, 1 << 40, 1 << 40])), data))
model_copy("st_int_weights", weights=st_bytes(edited(lambda h: [h[k].__setitem__("dtype", "I32") for k in tensors]), data))
model_copy("st_newline_name", weights=st_bytes(  # a name that would break the message into lines
    {("evil\nname\x1b[31m" if k == first[0] else k): dict(v, dtype="Q7") if k == first[0] else v
     for k, v in header.items()}, data))
model_copy("st_missing_tensor", weights=st_bytes(
    {k: v for k, v in header.items() if k != "model.norm.weight"}, data))
os.makedirs("st_index_escape")
for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join("good", f), "st_index_escape")
shutil.copy("good/model.safetensors", "outside.safetensors")
write("st_index_escape/model.safetensors.index.json",
      json.dumps({"metadata": {}, "weight_map": {k: "../outside.safetensors" for k in tensors}}))

model_copy("st_truncated_data", weights=raw[:5000])                       # header intact, data cut
model_copy("st_wrong_shape", config=dict(config, intermediate_size=100))   # the weights are wider
shutil.copytree("good", "no_weights", ignore=shutil.ignore_patterns("*.safetensors"))

# --- config.json
shutil.copytree("good", "cfg_missing", ignore=shutil.ignore_patterns("config.json"))
model_copy("cfg_gpt2", config=dict(config, architectures=["GPT2LMHeadModel"], model_type="gpt2"))
model_copy("cfg_missing_hidden", config={k: v for k, v in config.items() if k != "hidden_size"})
model_copy("cfg_absurd_layers", config=dict(config, num_hidden_layers=10**12))
model_copy("cfg_negative_vocab", config=dict(config, vocab_size=-5))
model_copy("cfg_heads_mismatch", config=dict(config, num_attention_heads=4, num_key_value_heads=3))
model_copy("cfg_string_eps", config=dict(config, rms_norm_eps="small"))
model_copy("cfg_not_json", config=b'{"architectures": ["LlamaForCausalLM"], ')
gemma3 = dict(config, architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", sliding_window=8)
model_copy("cfg_gemma3_bidirectional", config=dict(gemma3, use_bidirectional_attention=True))
model_copy("cfg_gemma2_activation", config=dict(config, architectures=["Gemma2ForCausalLM"], model_type="gemma2",
                                               hidden_activation="gelu"))
model_copy("cfg_gemma3_layer_types", config=dict(gemma3, layer_types=["chunked_attention"] * config["num_hidden_layers"]))
model_copy("cfg_gemma3_multimodal", config=dict(config, architectures=["Gemma3ForConditionalGeneration"],
                                               model_type="gemma3"))

# --- tokenizer.json
model_copy("tok_unknown_model", tokenizer=dict(tokenizer, model=dict(tokenizer["model"], type="Unigram9")))
model_copy("tok_unknown_pretok", tokenizer=dict(tokenizer, pre_tokenizer={"type": "Quantum"}))
model_copy("tok_not_json", tokenizer=b'{"model": {"type": "BPE", "vocab": {')

# --- datasets
good_records = [{"instruction": f"Say {i}", "output": f"{i}"} for i in range(8)]
lines = [json.dumps(r) for r in good_records]
write("broken_line.jsonl", "\n".join(lines[:2] + ['{"instruction": "Say 2", "output": '] + lines[3:]) + "\n")
write("bad_utf8.jsonl", ("\n".join(lines[:4]) + "\n").encode() + b'{"instruction": "Say \xff\xfe", "output": "x"}\n')
write("no_output.jsonl", "\n".join(lines[:3] + ['{"instruction": "Say 3"}']) + "\n")
write("not_records.json", json.dumps({"instruction": "a lone object, not a list"}))
write("good.jsonl", "\n".join(lines) + "\n")
# CSV in AdvBench's layout (goal,target): a ragged row after a quoted line break, invalid
# UTF-8 on line 3, a quote never closed.
write("goal_target.csv", "goal,target\r\n" + "".join(f'"Say {i}, please","Sure, {i}"\r\n' for i in range(8)))
write("ragged.csv", 'goal,target\n"Say\n1",1\nSay 2,2,extra\n')
write("bad_utf8.csv", b"goal,target\nSay 1,1\nSay \xff,2\n")
write("unclosed.csv", 'goal,target\nSay 1,1\nSay 2,"2\nSay 3,3\n')

# --- YAML configs (train CONFIG.yaml)
base = "model:\n  path: good\ndata:\n  train: good.jsonl\ntrain:\n  output_dir: out/run\n  max_steps: 2\n"
write("unknown_key.yaml", base + "optim:\n  learning_rat: 1.0e-3\n")
write("wrong_type.yaml", base.replace("max_steps: 2", "max_steps: lots"))
write("bad_syntax.yaml", base + "lora:\n  r: [4\n")
write("list_for_scalar.yaml", base + "lora:\n  alpha: [16, 32]\n")
write("newline_key.yaml", base + '"bad\\nkey": 1\n')
write("escape.yaml", base.replace("output_dir: out/run", "output_dir: out/../../escaped"))

# --- tokens.json made for another vocabulary (the model has config["vocab_size"])
write("foreign_tokens.json", json.dumps({
    "format": "safetune.safety_tokens", "version": 1,
    "settings": {"topk": 2, "max_resp_len": 8, "mode": "p_diff", "temperature": 1.0, "limit": 0, "chat_template": "auto"},
    "aligned": {"path": "elsewhere", "hash": "0" * 64}, "probe": {"path": "elsewhere", "hash": "0" * 64},
    "vocab_size": config["vocab_size"] * 2, "num_examples": 4, "num_positions": 8,
    "tokens": [{"id": 3, "piece": "x", "weight": 1.0, "p_ref": 0.5, "diff": 0.1}]}, indent=1))

# --- outputs: a file where a directory should be, and a read-only directory
os.makedirs("out", exist_ok=True)
write("out/a_file", "this is a file\n")
os.makedirs("readonly")
os.chmod("readonly", 0o555)
write("out/existing.safetensors", "must stay as it is\n")
