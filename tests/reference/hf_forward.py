#!/usr/bin/env python3
"""Independent reference for the forward pass of HF Llama / Mistral / Qwen2 / Qwen3 /
Gemma 2 / Gemma 3 (text) models.

Written from the equations of Hugging Face transformers' modeling_llama.py,
modeling_mistral.py, modeling_qwen2.py, modeling_qwen3.py, modeling_gemma2.py and
modeling_gemma3.py (and rope_utils' default / linear / llama3 inverse frequencies), using
only torch and numpy: the safetensors file is parsed by hand.
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


def inv_frequencies(cfg, head_dim, local=False):
    base = cfg.get("rope_theta", 10000.0)
    if local:  # Gemma 3's sliding layers: their own base, default (unscaled) frequencies
        base = cfg.get("rope_local_base_freq", 10000.0)
    # rope_utils._compute_default_rope_parameters (computed in float32)
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    rs = None if local else cfg.get("rope_scaling")
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


def gemma_rms_norm(x, w, eps):
    # GemmaRMSNorm: normalise in float32 and scale by (1 + w) there, then cast back.
    xf = x.to(torch.float32) if x.dtype != torch.float64 else x
    out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (out * (1.0 + w.to(out.dtype))).to(x.dtype)


def softcap(x, cap):
    return torch.tanh(x / cap) * cap if cap else x


def sliding_layers(cfg, L):
    """Which layers use the sliding window, by each family's rule."""
    mt = cfg["model_type"]
    window = cfg.get("sliding_window")
    if mt in ("qwen2", "qwen3") and not cfg.get("use_sliding_window", False):
        window = None
    if not window:
        rule = [False] * L
    elif mt == "gemma2":  # Gemma2DecoderLayer: is_sliding = not bool(layer_idx % 2)
        rule = [l % 2 == 0 for l in range(L)]
    elif mt == "gemma3_text":  # every sliding_window_pattern-th layer is global
        pat = cfg.get("sliding_window_pattern", 6)
        rule = [bool((l + 1) % pat) for l in range(L)]
    elif mt in ("qwen2", "qwen3"):
        rule = [l >= cfg.get("max_window_layers", 0) for l in range(L)]
    else:
        rule = [True] * L
    types = cfg.get("layer_types")
    if types is not None and [t == "sliding_attention" for t in types] != rule and window:
        raise SystemExit("config.json layer_types %s disagree with the %s pattern %s" % (types, mt, rule))
    return window, rule


def forward(cfg, W, ids, mask, dtype):
    """ids, mask: [B,T] int64. Returns logits [B,T,V] in `dtype`."""
    W = {k: v.to(dtype) for k, v in W.items()}
    model_type = cfg["model_type"]
    gemma = model_type in ("gemma2", "gemma3_text")
    norm = gemma_rms_norm if gemma else rms_norm
    d = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    D = cfg.get("head_dim") or d // H
    L = cfg["num_hidden_layers"]
    eps = cfg.get("rms_norm_eps", 1e-6)
    B, T = ids.shape

    # Sliding window: which layers, by the family's rule.
    window, slides = sliding_layers(cfg, L)
    scaling = (cfg.get("query_pre_attn_scalar", 256) if gemma else D) ** -0.5
    attn_cap = cfg.get("attn_logit_softcapping") if gemma else None
    final_cap = cfg.get("final_logit_softcapping") if gemma else None

    pos = mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(mask == 0, 1)
    def cos_sin(inv_freq):
        freqs = pos[:, :, None].float() * inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]  # [B,1,T,D]

    rope_global = cos_sin(inv_frequencies(cfg, D))
    rope_local = cos_sin(inv_frequencies(cfg, D, local=True)) if model_type == "gemma3_text" else rope_global

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
    if gemma:  # the normalizer is a tensor of the hidden states' dtype
        h = h * torch.tensor(d ** 0.5, dtype=h.dtype)
    for l in range(L):
        p = "model.layers.%d." % l
        x = norm(h, W[p + "input_layernorm.weight"], eps)
        q = lin(x, p + "self_attn.q_proj").view(B, T, H, D)
        k = lin(x, p + "self_attn.k_proj").view(B, T, Hkv, D)
        if p + "self_attn.q_norm.weight" in W:  # Qwen3, Gemma 3: per-head norms before RoPE
            q = norm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = norm(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = lin(x, p + "self_attn.v_proj").view(B, T, Hkv, D).transpose(1, 2)
        cos, sin = rope_local if slides[l] else rope_global
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        scores = softcap((q @ k.transpose(2, 3)) * scaling, attn_cap)
        allow = allowed_win if slides[l] else allowed
        # Padding queries (never read) see nothing: give them their own key to stay finite.
        allow = allow | torch.eye(T, dtype=torch.bool)[None]
        scores = scores.masked_fill(~allow[:, None], float("-inf"))
        probs = torch.softmax(scores.float() if dtype != torch.float64 else scores, dim=-1).to(dtype)
        a = lin((probs @ v).transpose(1, 2).reshape(B, T, H * D), p + "self_attn.o_proj")
        if gemma:
            h = h + norm(a, W[p + "post_attention_layernorm.weight"], eps)
            x = norm(h, W[p + "pre_feedforward_layernorm.weight"], eps)
        else:
            h = h + a
            x = norm(h, W[p + "post_attention_layernorm.weight"], eps)
        g = lin(x, p + "mlp.gate_proj")
        u = lin(x, p + "mlp.up_proj")
        act = torch.nn.functional.gelu(g, approximate="tanh") if gemma else torch.nn.functional.silu(g)
        m = lin(act * u, p + "mlp.down_proj")
        h = h + (norm(m, W[p + "post_feedforward_layernorm.weight"], eps) if gemma else m)
    h = norm(h, W["model.norm.weight"], eps)
    head = W["lm_head.weight"] if not cfg.get("tie_word_embeddings", gemma) else W["model.embed_tokens.weight"]
    return softcap(h @ head.T, final_cap)


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
