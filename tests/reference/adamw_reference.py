#!/usr/bin/env python3
"""Independent reference for the AdamW + gradient clipping tests: PyTorch's own
torch.optim.AdamW and torch.nn.utils.clip_grad_norm_.

usage: adamw_reference.py IN.safetensors OUT.safetensors

IN holds param.<i> (initial values) and grad.<k>.<i> (gradient of parameter i at step k;
absent = no gradient that step); its metadata holds steps, lrs (comma separated, one per
step), beta1, beta2, eps, weight_decay, max_norm. For every step k the script clips the
gradients to max_norm, sets the lr, takes one AdamW step, and writes param.<k>.<i>;
total_norm holds the norms clip_grad_norm_ returned. F32 only; safetensors is read and
written here by hand (the format is a length, a JSON header and raw bytes).
"""
import sys

import torch

from safetensors_io import read_safetensors, write_safetensors


def main():
    tensors, meta = read_safetensors(sys.argv[1])
    steps = int(meta["steps"])
    lrs = [float(x) for x in meta["lrs"].split(",")]
    n = sum(1 for k in tensors if k.startswith("param."))
    params = [torch.nn.Parameter(tensors[f"param.{i}"].clone()) for i in range(n)]
    opt = torch.optim.AdamW(params, lr=lrs[0], betas=(float(meta["beta1"]), float(meta["beta2"])),
                            eps=float(meta["eps"]), weight_decay=float(meta["weight_decay"]), foreach=False)
    out, norms = {}, []
    for k in range(steps):
        for i, p in enumerate(params):
            g = tensors.get(f"grad.{k}.{i}")
            p.grad = None if g is None else g.clone()
        norms.append(torch.nn.utils.clip_grad_norm_(params, float(meta["max_norm"])))
        for group in opt.param_groups:
            group["lr"] = lrs[k]
        opt.step()
        for i, p in enumerate(params):
            out[f"param.{k}.{i}"] = p.detach().clone()
    out["total_norm"] = torch.stack(norms).float()
    write_safetensors(sys.argv[2], out)


if __name__ == "__main__":
    main()
