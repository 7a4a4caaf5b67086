#!/usr/bin/env python3
"""Reference training step in eager PyTorch, for scripts/bench_train.sh.

The same model maths as HF's modeling_llama.py with eager attention (RMSNorm in fp32,
rotate-half RoPE, causal softmax attention, SiLU-gated MLP, tied or separate lm_head),
loaded from the same HF directory (safetensors parsed by hf_forward.read_checkpoint), on
a random batch of B x T tokens with every position trained: logits over the vocabulary,
F.cross_entropy of positions :-1 against ids 1:, backward, clip_grad_norm_(1.0),
torch.optim.AdamW, zero_grad. Full fine-tuning (every parameter trains).

  train_step_reference.py --model DIR [--batch 8] [--seq 256] [--steps 5] [--warmup 1]
                          [--threads N] [--lr 3e-5]
Prints one JSON object: {"step_ms": median, "step_ms_min", "tokens_per_s", "loss",
"blas_core"}, the last the OpenBLAS kernel set the GEMMs ran on ("unknown" for another BLAS).
"""
import argparse
import ctypes
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_forward import read_checkpoint  # noqa: E402


def blas_core():
    """The kernel set of the OpenBLAS this process has loaded (openblas_get_corename)."""
    with open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f if "openblas" in line and ".so" in line})
    for path in paths:
        try:
            get = ctypes.CDLL(path).openblas_get_corename
        except (OSError, AttributeError):
            continue
        get.restype = ctypes.c_char_p
        return get().decode()
    return "unknown"


class Llama(torch.nn.Module):
    def __init__(self, cfg, weights):
        super().__init__()
        self.cfg = cfg
        self.p = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v.float()) for k, v in weights.items()
                                         if not k.endswith("rotary_emb.inv_freq")})
        d = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads", self.heads)
        self.head_dim = cfg.get("head_dim") or d // self.heads
        self.layers = cfg["num_hidden_layers"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        base = cfg.get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (base ** (torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim))

    def w(self, name):
        return self.p[name.replace(".", "__")]

    def rms(self, x, name):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return self.w(name) * (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype)

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def forward(self, ids):
        B, T = ids.shape
        h = F.embedding(ids, self.w("model.embed_tokens.weight"))
        pos = torch.arange(T).float()
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        mask = torch.full((T, T), float("-inf")).triu(1)
        rep = self.heads // self.kv_heads
        for i in range(self.layers):
            pre = f"model.layers.{i}."
            x = self.rms(h, pre + "input_layernorm.weight")
            q = F.linear(x, self.w(pre + "self_attn.q_proj.weight")).view(B, T, self.heads, self.head_dim).transpose(1, 2)
            k = F.linear(x, self.w(pre + "self_attn.k_proj.weight")).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
            v = F.linear(x, self.w(pre + "self_attn.v_proj.weight")).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            if rep > 1:
                k = k.repeat_interleave(rep, dim=1)
                v = v.repeat_interleave(rep, dim=1)
            scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + mask
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            a = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, -1)
            h = h + F.linear(a, self.w(pre + "self_attn.o_proj.weight"))
            x = self.rms(h, pre + "post_attention_layernorm.weight")
            g = F.linear(x, self.w(pre + "mlp.gate_proj.weight"))
            u = F.linear(x, self.w(pre + "mlp.up_proj.weight"))
            h = h + F.linear(F.silu(g) * u, self.w(pre + "mlp.down_proj.weight"))
        h = self.rms(h, "model.norm.weight")
        head = self.w("model.embed_tokens.weight") if self.cfg.get("tie_word_embeddings") else self.w("lm_head.weight")
        return F.linear(h, head)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lr", type=float, default=3e-5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    model = Llama(cfg, read_checkpoint(args.model))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, cfg["vocab_size"], (args.batch, args.seq), generator=g)

    def step():
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times, loss = [], 0.0
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"step_ms": med, "step_ms_min": times[0],
                      "tokens_per_s": args.batch * args.seq / (med / 1e3), "loss": loss,
                      "blas_core": blas_core()}))


if __name__ == "__main__":
    main()
