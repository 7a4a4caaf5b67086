#!/usr/bin/env python3
"""One PACT fine-tuning step as the reference implementation is designed, written with
transformers + peft (../shared/PACT.md, "Costs of the reference implementation"): the
model being trained is a peft LoRA model (r 8, alpha 32, dropout 0.05 on q_proj and
v_proj) over the HF checkpoint; the frozen reference is a second full copy of the model;
each step runs two reference forwards without gradients, the full context and the
post-only context (a 4-token header, then the response), each materialising fp32 logits
over the whole vocabulary, slices the |S| columns, computes PACT's gate and weighted subset
KL (T 2, the faithful target q = reference x max(v, 0)), adds the response cross-entropy,
and takes an AdamW step.

The batch is what `safetune bench step --prompt P` builds: B rows of T random tokens, the
first P of each a prompt (not trained), the rest the response.

Prints one JSON object: step_ms (median over --steps after --warmup), step_ms_min,
peak_rss_mb (the process's peak resident set), threads, torch, transformers, peft.
"""
import argparse
import copy
import json
import resource
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F


def gate(z_theta, z_post, t, alpha=2.0, prefix_n=8, tau_d=8.0, top_p=0.9):
    """PACT's gate c_t from the model's and the post-only reference's S logits."""

    def spread(z):
        p = torch.softmax(z.double(), -1)
        srt, _ = torch.sort(p, -1, descending=True)
        k = (torch.cumsum(srt, -1) < top_p).sum(-1) + 1
        return k.double() / z.shape[-1]

    c = torch.sigmoid(alpha * (spread(z_theta) - spread(z_post)))
    c = c * torch.exp(-torch.clamp(t.double() - prefix_n, min=0) / tau_d)
    return c.float()


def main():
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft asks transformers a deprecated name
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="tokens.json of `safetune tokens` (S and v)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    import peft
    import transformers

    base = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    reference = copy.deepcopy(base).eval()  # the second full copy
    for p in reference.parameters():
        p.requires_grad_(False)
    lora = peft.LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                           task_type="CAUSAL_LM")
    model = peft.get_peft_model(base, lora)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-5, weight_decay=0.0)

    toks = json.load(open(a.tokens))
    S = torch.tensor([t["id"] for t in toks["tokens"]], dtype=torch.long)
    w = torch.tensor([max(t["weight"], 0.0) for t in toks["tokens"]], dtype=torch.float32)
    V = base.config.vocab_size
    B, T, P, H = a.batch, a.seq, a.prompt, 4
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (B, T), generator=g)
    post_ids = torch.cat([ids[:, :H], ids[:, P:]], 1)  # header, then the response
    R = T - P  # response tokens; position t predicts token t + 1
    labels = ids[:, P:]  # trained targets: the response
    t_idx = torch.arange(R - 1).repeat(B)
    Temp = 2.0

    def step():
        with torch.no_grad():
            full = reference(input_ids=ids).logits.float()  # [B, T, V] fp32
            post = reference(input_ids=post_ids).logits.float()
            z_full = full[:, P - 1:T - 1, :][:, :R - 1, :].reshape(-1, V)[:, S]
            z_post = post[:, H - 1:H - 1 + R - 1, :].reshape(-1, V)[:, S]
            del full, post
        logits = model(input_ids=ids).logits  # [B, T, V]
        resp = logits[:, P - 1:T - 2, :].reshape(-1, V).float()  # predicts labels[:, :R - 1]
        ce = F.cross_entropy(resp, labels[:, :R - 1].reshape(-1))
        z = resp[:, S]
        c = gate(z.detach(), z_post, t_idx)
        z_mix = (1 - c)[:, None] * z_full + c[:, None] * z_post
        q = torch.softmax(z_mix / Temp, -1) * w
        q = q / q.sum(-1, keepdim=True).clamp_min(1e-12)
        logp = torch.log_softmax(z / Temp, -1)
        kl = (q * (torch.log(q.clamp_min(1e-12)) - logp)).sum(-1).mean() * Temp * Temp
        loss = ce + kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        step()
        dt = (time.perf_counter() - t0) * 1000
        if i >= a.warmup:
            times.append(dt)
    print(json.dumps({"step_ms": statistics.median(times), "step_ms_min": min(times),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "transformers": transformers.__version__, "peft": peft.__version__}))


if __name__ == "__main__":
    sys.exit(main())
