#!/usr/bin/python3
"""Independent reference for the safety-token method, written from the method's text
(PACT: "Few Tokens, Big Leverage", step 1 and step 2) in plain PyTorch, float64, one
position at a time where that reads more plainly.

usage:
  pact_reference.py step1  IN.safetensors OUT.safetensors
      IN: la.<i>, lb.<i> [R_i, V] logits of the aligned / probe model on example i's
          response positions; metadata: mode (p_diff | pref_logratio), tau, topk.
      OUT: d [V], pbar [V] (means over steps, then examples), S [topk] (ids, by pbar
          descending), raw [topk] (d on S), v [topk] (the safety direction on S).
  pact_reference.py losses IN.safetensors OUT.safetensors
      IN, per case c (prefix "c<c>."): z_theta, z_full, z_post [N, K] logits on S,
          w [K] (= max(v, 0)), t [N] and valid [N] (0/1), logits_theta, logits_ref [N, V]
          and S [K] ids; metadata "c<c>" = JSON options (temperature, reference_mix,
          gate_alpha, gate_b, gate_top_p, gate_temperature, prefix_decay, prefix_n,
          prefix_tau) and "cases" = the number of cases.
      OUT, per case: pact, pact_grad [N, K], gate_mean, kl_full, kl_full_grad [N, V]
          (at the case's temperature), anchor, anchor_grad [N, V], wkl (pact with the
          reference fixed to z_full), wkl_grad; and when the case has logits_post [N, V]
          (the post-only context over the whole vocabulary): safety_mass,
          safety_mass_grad [N, V], safety_mass_mass, safety_mass_shape (the bucket KL
          over |S|+1 categories, its mass and shape terms, gate from z_theta and
          logits_post[:, S]).
Safetensors is read and written by hand (an 8-byte length, a JSON header, raw bytes).
"""
import json
import math
import sys

import torch

from safetensors_io import read_safetensors, write_safetensors



def step1(inp, meta):
    mode, tau, topk = meta["mode"], float(meta["tau"]), int(meta["topk"])
    n_examples = len([k for k in inp if k.startswith("la.")])
    per_example_d, per_example_p = [], []
    for i in range(n_examples):
        za, zb = inp["la.%d" % i].double(), inp["lb.%d" % i].double()
        steps_d, steps_p = [], []
        for t in range(za.shape[0]):
            pa = torch.softmax(za[t] / tau, dim=0)
            pb = torch.softmax(zb[t] / tau, dim=0)
            if mode == "p_diff":
                steps_d.append(pa - pb)
            else:
                steps_d.append(pa * (torch.log(pb) - torch.log(pa)))
            steps_p.append(pa)
        per_example_d.append(torch.stack(steps_d).mean(dim=0))
        per_example_p.append(torch.stack(steps_p).mean(dim=0))
    d = torch.stack(per_example_d).mean(dim=0)
    pbar = torch.stack(per_example_p).mean(dim=0)
    S = torch.topk(pbar, topk).indices
    d_s = torch.zeros_like(d)
    d_s[S] = d[S]
    nz = d_s != 0
    vals = d_s[nz]
    d_s[nz] = (vals - vals.mean()) / (vals.std() + 1e-6)  # torch's default std: unbiased
    v = d_s / (torch.linalg.norm(d_s) + 1e-6)
    return {"d": d, "pbar": pbar, "S": S, "raw": d[S], "v": v[S]}


# ------------------------------------------------------------------------------------
# Step 2


def spread(z_row, top_p, t_g):
    """I = k_p / |S|: k_p the smallest number of tokens whose sorted cumulative
    probability reaches top_p."""
    p = sorted(torch.softmax(z_row.double() / t_g, dim=0).tolist(), reverse=True)
    total = 0.0
    for k, pk in enumerate(p, start=1):
        total += pk
        if total >= top_p:
            return k / len(p)
    return 1.0


def gate(z_theta_row, z_post_row, t, o):
    if o["reference_mix"] == "full":
        return 0.0
    if o["reference_mix"] == "post":
        return 1.0
    i_theta = spread(z_theta_row, o["gate_top_p"], o["gate_temperature"])
    i_post = spread(z_post_row, o["gate_top_p"], o["gate_temperature"])
    c = 1.0 / (1.0 + math.exp(-o["gate_alpha"] * (i_theta - i_post - o["gate_b"])))
    if o["prefix_decay"]:
        c *= math.exp(-max(t - o["prefix_n"], 0) / o["prefix_tau"])
    return c


def subset_kl_position(z_theta_row, z_ref_row, w, T):
    q = torch.softmax(z_ref_row / T, dim=0) * w
    q = q / q.sum()
    log_p = torch.log_softmax(z_theta_row / T, dim=0)
    total = 0.0
    for j in range(q.shape[0]):
        if q[j] > 0:
            total = total + q[j] * (torch.log(q[j]) - log_p[j])
        else:
            total = total + 0.0 * log_p[j]
    return total


def pact(z_theta, z_full, z_post, w, t, valid, o):
    T = o["temperature"]
    terms, gates = [], []
    for n in range(z_theta.shape[0]):
        if not valid[n]:
            continue
        c = gate(z_theta[n].detach(), z_post[n], int(t[n]), o)
        z_mix = (1 - c) * z_full[n] + c * z_post[n]
        terms.append(subset_kl_position(z_theta[n], z_mix, w, T))
        gates.append(c)
    if not terms:
        return z_theta.sum() * 0.0, 0.0
    return T * T * torch.stack(terms).mean(), sum(gates) / len(gates)


def kl_full(lt, lr, valid, T):
    terms = []
    for n in range(lt.shape[0]):
        if valid[n]:
            p_ref = torch.softmax(lr[n] / T, dim=0)
            terms.append((p_ref * (torch.log(p_ref) - torch.log_softmax(lt[n] / T, dim=0))).sum())
    return T * T * torch.stack(terms).mean() if terms else lt.sum() * 0.0


def anchor(lt, lr, S, valid):
    terms = []
    for n in range(lt.shape[0]):
        if valid[n]:
            a = torch.log_softmax(lt[n], dim=0)[S]
            b = torch.log_softmax(lr[n], dim=0)[S]
            terms.append(((a - b) ** 2).mean())
    return torch.stack(terms).mean() if terms else lt.sum() * 0.0


REST_FLOOR = 1e-6


def safety_mass(lt, lr, lpost, S, t, valid, o):
    """KL over |S|+1 buckets per position: each safety token's probability under the
    whole-vocabulary softmax at T, and the rest of the vocabulary; the reference's buckets
    mixed by the gate as probabilities. Mean over every row (valid or not)."""
    T = o["temperature"]
    in_S = torch.zeros(lt.shape[1], dtype=torch.bool)
    in_S[S] = True
    terms, mass_terms, gates = [], [], []
    for n in range(lt.shape[0]):
        if not valid[n]:
            continue
        c = gate(lt[n, S].detach(), lpost[n, S], int(t[n]), o)
        a_all = (1 - c) * torch.softmax(lr[n] / T, dim=0) + c * torch.softmax(lpost[n] / T, dim=0)
        p_all = torch.softmax(lt[n] / T, dim=0)
        a, p = a_all[S], p_all[S]
        a_rest, p_rest = a_all[~in_S].sum(), p_all[~in_S].sum()
        rest = a_rest * (torch.log(a_rest.clamp(min=REST_FLOOR)) - torch.log(p_rest.clamp(min=REST_FLOOR)))
        total = rest
        for j in range(a.shape[0]):
            total = total + (a[j] * (torch.log(a[j]) - torch.log(p[j])) if a[j] > 0 else 0.0 * p[j])
        terms.append(total)
        a_S, p_S = a.sum(), p.sum()
        mass_terms.append((a_S * (torch.log(a_S) - torch.log(p_S)) + rest).detach())
        gates.append(c)
    rows = lt.shape[0]
    if not terms:
        return lt.sum() * 0.0, 0.0, 0.0
    loss = T * T * torch.stack(terms).sum() / rows
    mass = float(torch.stack(mass_terms).sum()) / rows
    return loss, mass, float(loss.detach()) / (T * T) - mass


def losses(inp, meta):
    out = {}
    for c in range(int(meta["cases"])):
        o = json.loads(meta["c%d" % c])
        g = lambda k: inp["c%d.%s" % (c, k)]  # noqa: E731
        z_full, z_post, w = g("z_full").double(), g("z_post").double(), g("w").double()
        t, valid = g("t"), g("valid")
        S = g("S")
        zt = g("z_theta").double().requires_grad_(True)
        loss, gm = pact(zt, z_full, z_post, w, t, valid, o)
        (grad,) = torch.autograd.grad(loss, zt, allow_unused=True)
        out["c%d.pact" % c] = loss.detach().reshape(1)
        out["c%d.pact_grad" % c] = grad if grad is not None else torch.zeros_like(zt)
        out["c%d.gate_mean" % c] = torch.tensor([gm], dtype=torch.float64)

        zt2 = g("z_theta").double().requires_grad_(True)
        terms = [subset_kl_position(zt2[n], z_full[n], w, o["temperature"]) for n in range(zt2.shape[0]) if valid[n]]
        wkl = o["temperature"] ** 2 * torch.stack(terms).mean() if terms else zt2.sum() * 0.0
        (grad,) = torch.autograd.grad(wkl, zt2, allow_unused=True)
        out["c%d.wkl" % c] = wkl.detach().reshape(1)
        out["c%d.wkl_grad" % c] = grad if grad is not None else torch.zeros_like(zt2)

        lt = g("logits_theta").double().requires_grad_(True)
        lr = g("logits_ref").double()
        kl = kl_full(lt, lr, valid, o["temperature"])
        (grad,) = torch.autograd.grad(kl, lt)
        out["c%d.kl_full" % c] = kl.detach().reshape(1)
        out["c%d.kl_full_grad" % c] = grad

        lt = g("logits_theta").double().requires_grad_(True)
        an = anchor(lt, lr, S, valid)
        (grad,) = torch.autograd.grad(an, lt)
        out["c%d.anchor" % c] = an.detach().reshape(1)
        out["c%d.anchor_grad" % c] = grad

        if ("c%d.logits_post" % c) in inp:
            lt = g("logits_theta").double().requires_grad_(True)
            sm, mass, shape = safety_mass(lt, lr, g("logits_post").double(), S, t, valid, o)
            (grad,) = torch.autograd.grad(sm, lt)
            out["c%d.safety_mass" % c] = sm.detach().reshape(1)
            out["c%d.safety_mass_grad" % c] = grad
            out["c%d.safety_mass_mass" % c] = torch.tensor([mass], dtype=torch.float64)
            out["c%d.safety_mass_shape" % c] = torch.tensor([shape], dtype=torch.float64)
    return out


def main():
    what, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
    inp, meta = read_safetensors(src)
    torch.set_num_threads(1)
    out = step1(inp, meta) if what == "step1" else losses(inp, meta)
    write_safetensors(dst, out)


if __name__ == "__main__":
    main()
