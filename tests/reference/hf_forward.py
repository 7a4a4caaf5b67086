#!/usr/bin/python3
"""Independent reference for the forward pass of HF Llama / Mistral / Qwen2 models.

Written from the equations of Hugging Face transformers' modeling_llama.py,
modeling_mistral.py and modeling_qwen2.py (and rope_utils' default / linear / llama3
inverse frequencies), using only torch and numpy: the safetensors file is parsed by hand.
Used by tests/e2e/forward_parity.sh to check safetune's C++ forward.

  hf_forward.py --model DIR --ids 1,2,3 [--compare logits.safetensors --tol 1e-4]
                [--out ref.npy] [--dtype float32|float64]
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

from safetensors_io import read_safetensors


def read_checkpoint(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        out = {}
        for fn in files:
            out.update(read_safetensors(os.path.join(model_dir, fn))[0])
        return out
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))[0]


def inv_frequencies(cfg, head_dim):
    base = cfg.get("rope_theta", 10000.0)
    # rope_utils._compute_default_rope_parameters (computed in float32)
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv_freq
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv_freq / rs["factor"]
    if kind == "llama3":
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old_len = rs["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        return torch.where(medium, smoothed, scaled)
    raise SystemExit("unsupported rope scaling " + str(kind))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rms_norm(x, w, eps):
    xf = x.to(torch.float32) if x.dtype != torch.float64 else x
    var = xf.pow(2).mean(-1, keepdim=True)
    return w * (xf * torch.rsqrt(var + eps)).to(x.dtype)


def forward(cfg, W, ids, mask, dtype):
    """ids, mask: [B,T] int64. Returns logits [B,T,V] in `dtype`."""
    W = {k: v.to(dtype) for k, v in W.items()}
    model_type = cfg["model_type"]
    d = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    D = cfg.get("head_dim") or d // H
    L = cfg["num_hidden_layers"]
    eps = cfg.get("rms_norm_eps", 1e-6)
    B, T = ids.shape

    # Sliding window: Mistral on every layer; Qwen2 on layers >= max_window_layers.
    window = cfg.get("sliding_window")
    if model_type == "qwen2" and not cfg.get("use_sliding_window", False):
        window = None
    first_sliding = cfg.get("max_window_layers", 0) if model_type == "qwen2" else 0

    pos = mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(mask == 0, 1)
    inv_freq = inv_frequencies(cfg, D)
    freqs = pos[:, :, None].float() * inv_freq[None, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]  # [B,1,T,D]

    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = (j <= i)[None] & (mask[:, None, :] == 1)  # [B,T,T]
    allowed_win = allowed & ((i - j) < window)[None] if window else allowed

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        if name + ".bias" in W:
            y = y + W[name + ".bias"]
        return y

    h = W["model.embed_tokens.weight"][ids]
    for l in range(L):
        p = "model.layers.%d." % l
        x = rms_norm(h, W[p + "input_layernorm.weight"], eps)
        q = lin(x, p + "self_attn.q_proj").view(B, T, H, D).transpose(1, 2)
        k = lin(x, p + "self_attn.k_proj").view(B, T, Hkv, D).transpose(1, 2)
        v = lin(x, p + "self_attn.v_proj").view(B, T, Hkv, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        scores = (q @ k.transpose(2, 3)) / math.sqrt(D)
        allow = allowed_win if (window and l >= first_sliding) else allowed
        # Padding queries (never read) see nothing: give them their own key to stay finite.
        allow = allow | torch.eye(T, dtype=torch.bool)[None]
        scores = scores.masked_fill(~allow[:, None], float("-inf"))
        probs = torch.softmax(scores.float() if dtype != torch.float64 else scores, dim=-1).to(dtype)
        a = (probs @ v).transpose(1, 2).reshape(B, T, H * D)
        h = h + lin(a, p + "self_attn.o_proj")
        x = rms_norm(h, W[p + "post_attention_layernorm.weight"], eps)
        g = lin(x, p + "mlp.gate_proj")
        u = lin(x, p + "mlp.up_proj")
        h = h + lin(torch.nn.functional.silu(g) * u, p + "mlp.down_proj")
    h = rms_norm(h, W["model.norm.weight"], eps)
    head = W["lm_head.weight"] if not cfg.get("tie_word_embeddings", False) else W["model.embed_tokens.weight"]
    return h @ head.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--compare", help="safetensors file with a 'logits' [T,V] tensor to check")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--out", help="write the reference logits [T,V] as .npy")
    args = ap.parse_args()

    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    W = read_checkpoint(args.model)
    ids = torch.tensor([[int(x) for x in args.ids.split(",")]], dtype=torch.int64)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    with torch.no_grad():
        logits = forward(cfg, W, ids, torch.ones_like(ids), dtype)[0]
    if args.out:
        np.save(args.out, logits.numpy())
    if args.compare:
        got = read_safetensors(args.compare)[0]["logits"]
        if tuple(got.shape) != tuple(logits.shape):
            print("shape mismatch: got %s, reference %s" % (tuple(got.shape), tuple(logits.shape)))
            return 1
        diff = (got.double() - logits.double()).abs().max().item()
        scale = logits.abs().max().item()
        ok = diff <= args.tol
        print("max_abs_diff=%.3g (logit scale %.3g, tol %.0e) %s" % (diff, scale, args.tol, "OK" if ok else "FAIL"))
        return 0 if ok else 1
    print(json.dumps({"logits_shape": list(logits.shape), "max_abs": logits.abs().max().item()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
