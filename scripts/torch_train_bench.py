#!/usr/bin/env python3
"""The PyTorch eager side of the training benchmark: one training step of a randomly
initialised Llama-shaped model (default ~1.24B parameters: Llama-3.2-1B's shape, tied
embeddings), LoRA or full fine-tuning, with no constraint or with PACT's subset KL, timed
on one GPU. Prints one JSON object per configuration and, with --out, writes them all.

Precision policy (standard PyTorch mixed precision): full fine-tuning keeps fp32 master
weights and fp32 AdamW state and runs matmuls in bf16 under autocast; LoRA keeps the
frozen base weights in bf16 and the adapters (and their AdamW state) in fp32.

The constraint, as the trainer computes it per step:
  adapter_off  the reference is the same model without its adapters (LoRA) or a frozen copy
               (full fine-tuning): one extra no-grad forward of the batch
  cache        the reference logits on S are precomputed: no extra forward
then PACT's weighted subset KL (temperature 2, T^2 factor) on the K safety columns at every
response position, against the full-context reference (the gate's post-only context is
not part of this benchmark).

FLOPs per token (for MFU), of the trained step only: forward 2 N + 4 L T d (N: every matmul
weight, the tied lm_head included; T: sequence length, non-causal count as PaLM's), backward
twice the forward for full fine-tuning; with LoRA the weight gradients of the frozen base
are skipped: backward 2 N + 8 L T d. The reference forward of adapter_off is not counted.
The peak is the GPU's dense bf16 rate (--peak-tflops, H100/H200 SXM: 989).
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    def __init__(self, a):
        self.vocab, self.hidden, self.layers = a.vocab, a.hidden, a.layers
        self.heads, self.kv_heads, self.inter = a.heads, a.kv_heads, a.intermediate
        self.head_dim = a.hidden // a.heads
        self.rope_theta, self.eps = 500000.0, 1e-5


def rms_norm(x, w, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def rope(x, cos, sin):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return x * cos + torch.cat((-x2, x1), -1) * sin


class LoraLinear(nn.Module):
    """y = x W^T + (alpha / r) x A^T B^T; A, B fp32 (autocast runs the matmuls in bf16)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.A = nn.Parameter(torch.randn(r, base.in_features, device=base.weight.device) / math.sqrt(base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))
        self.scale = alpha / r
        self.enabled = True

    def forward(self, x):
        y = self.base(x)
        if self.enabled:
            y = y + (x @ self.A.t().to(x.dtype)) @ self.B.t().to(x.dtype) * self.scale
        return y


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        d, hd = c.hidden, c.head_dim
        self.q_proj = nn.Linear(d, c.heads * hd, bias=False)
        self.k_proj = nn.Linear(d, c.kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, c.kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(c.heads * hd, d, bias=False)
        self.gate_proj = nn.Linear(d, c.inter, bias=False)
        self.up_proj = nn.Linear(d, c.inter, bias=False)
        self.down_proj = nn.Linear(c.inter, d, bias=False)
        self.ln1 = nn.Parameter(torch.ones(d))
        self.ln2 = nn.Parameter(torch.ones(d))

    def forward(self, x, cos, sin):
        c = self.c
        B, T, _ = x.shape
        h = rms_norm(x, self.ln1, c.eps)
        q = self.q_proj(h).view(B, T, c.heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = c.heads // c.kv_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # old torch (CPU smoke runs)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(c.head_dim)
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            a = s.softmax(-1) @ v
        x = x + self.o_proj(a.transpose(1, 2).reshape(B, T, -1))
        h = rms_norm(x, self.ln2, c.eps)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.vocab, c.hidden)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.norm = nn.Parameter(torch.ones(c.hidden))

    def hidden_states(self, ids):
        c = self.c
        T = ids.shape[1]
        inv = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, device=ids.device).float() / c.head_dim))
        ang = torch.outer(torch.arange(T, device=ids.device).float(), inv)
        ang = torch.cat((ang, ang), -1)
        x = self.embed(ids)
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        for b in self.blocks:
            x = b(x, cos, sin)
        return rms_norm(x, self.norm, c.eps)

    def logits(self, h):
        return h @ self.embed.weight.t().to(h.dtype)  # tied lm_head


def matmul_params(c):
    per_layer = c.hidden * c.head_dim * (2 * c.heads + 2 * c.kv_heads) + 3 * c.hidden * c.inter
    return c.layers * per_layer + c.vocab * c.hidden


def subset_kl(z_theta, z_ref, w, T):
    q = torch.softmax(z_ref.float() / T, -1) * w
    q = q / q.sum(-1, keepdim=True).clamp_min(1e-30)
    log_p = torch.log_softmax(z_theta.float() / T, -1)
    return (torch.xlogy(q, q) - q * log_p).sum(-1).mean() * T * T


def run(args, mode, constraint, device):
    torch.manual_seed(0)
    c = Config(args)
    lora = mode == "lora"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    # Parameters created on the GPU directly where torch allows it (a 1B model inits fast there).
    ctx = torch.device(device) if hasattr(torch.device, "__enter__") else _Null()
    with ctx:
        model = Llama(c).to(device)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.normal_(std=0.02)
    n_params = sum(p.numel() for p in model.parameters())
    adapters = []
    if lora:
        model = model.to(dtype)  # frozen base in bf16
        for p in model.parameters():
            p.requires_grad_(False)
        for b in model.blocks:
            b.q_proj = LoraLinear(b.q_proj, args.lora_r, 32.0)
            b.v_proj = LoraLinear(b.v_proj, args.lora_r, 32.0)
            adapters += [b.q_proj, b.v_proj]
        params = [p for a in adapters for p in (a.A, a.B)]
    else:
        params = list(model.parameters())  # fp32 master weights
    fused = device.type == "cuda" and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, **({"fused": True} if fused else {}))
    ref_model = None
    if constraint == "pact_adapter_off" and not lora:
        import copy

        ref_model = copy.deepcopy(model).to(dtype).eval()
        for p in ref_model.parameters():
            p.requires_grad_(False)

    B, T, K = args.batch, args.seq, args.subset
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, c.vocab, (B, T), generator=g).to(device)
    targets = ids.roll(-1, 1).clone()
    prompt = T // 4  # the first quarter is prompt: no loss there
    targets[:, :prompt] = -100
    targets[:, -1] = -100
    S = torch.randperm(c.vocab, generator=g)[:K].to(device)
    w = torch.rand(K, generator=g).to(device)
    resp = targets.ne(-100)
    ref_cache = torch.randn(int(resp.sum()), K, generator=g).to(device) if constraint == "pact_cache" else None
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with autocast:
            h = model.hidden_states(ids)
            z = model.logits(h)
            loss = F.cross_entropy(z.float().view(-1, c.vocab), targets.view(-1), ignore_index=-100)
            if constraint != "none":
                z_s = z[..., S][resp]
                if ref_cache is not None:
                    z_ref = ref_cache
                else:
                    # The reference's logits on S only: h @ W[S]^T, no [tokens, V] matrix.
                    with torch.no_grad():
                        if lora:
                            for a in adapters:
                                a.enabled = False
                            h_ref = model.hidden_states(ids)
                            for a in adapters:
                                a.enabled = True
                            W = model.embed.weight
                        else:
                            h_ref = ref_model.hidden_states(ids)
                            W = ref_model.embed.weight
                        z_ref = (h_ref @ W[S].t().to(h_ref.dtype))[resp]
                loss = loss + subset_kl(z_s, z_ref, w, 2.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    step_s = sorted(times)[len(times) // 2]
    N = matmul_params(c)
    attn = 4 * c.layers * T * c.hidden  # per token: Q K^T and A V, forward
    # The trained step's FLOPs only (a reference forward is overhead, not useful work).
    # As `safetune bench step` counts: LoRA adds 6 FLOPs per adapter weight.
    flops_tok = 4 * N + 3 * attn + 6 * sum(p.numel() for p in params) if lora else 3 * (2 * N + attn)
    tokens = B * T
    r = {
        "impl": "torch_eager",
        "torch": torch.__version__,
        "mode": mode,
        "constraint": constraint,
        "params": n_params,
        "trainable": sum(p.numel() for p in params),
        "batch": B,
        "seq": T,
        "step_ms": step_s * 1e3,
        "tokens_per_s": tokens / step_s,
        "loss": float(loss),
        "mfu": tokens * flops_tok / step_s / (args.peak_tflops * 1e12),
        "flops_per_token": flops_tok,
        "peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }
    del model, opt, ref_model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return r


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--subset", type=int, default=50)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--modes", default="lora,full")
    ap.add_argument("--constraints", default="none,pact_adapter_off,pact_cache")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", help="write the results (a JSON list) here")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device"}))
        return 77
    results = []
    for mode in args.modes.split(","):
        for constraint in args.constraints.split(","):
            try:
                r = run(args, mode, constraint, device)
            except Exception as e:  # an out-of-memory on one configuration leaves the others
                r = {"impl": "torch_eager", "mode": mode, "constraint": constraint, "error": repr(e)[:500]}
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            print(json.dumps(r), flush=True)
            results.append(r)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
