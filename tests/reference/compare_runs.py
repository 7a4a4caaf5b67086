"""Two training runs' adapters and per-step metrics agree (data-parallel tests).

usage: compare_runs.py RUN_A RUN_B STEPS

Checks both adapters trained (max |lora_B| > 1e-3), their weights agree to 1e-5, the
metrics list steps 1..STEPS in both, and per step the losses and grad norms agree to 1e-5
and the token counts exactly. Prints the largest differences; exits non-zero otherwise.
"""
import json
import sys

from safetensors_io import read_safetensors

a_dir, b_dir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
a = read_safetensors(a_dir + "/adapter/adapter_model.safetensors")[0]
b = read_safetensors(b_dir + "/adapter/adapter_model.safetensors")[0]
assert set(a) == set(b) and a, (sorted(a), sorted(b))
err = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
moved = max(a[k].double().abs().max().item() for k in a if "lora_B" in k)
assert moved > 1e-3, f"the adapter did not train (max |B| = {moved})"
assert err < 1e-5, f"max |weights difference| = {err}"
la = [json.loads(line) for line in open(a_dir + "/metrics.jsonl")]
lb = [json.loads(line) for line in open(b_dir + "/metrics.jsonl")]
steps_a, steps_b = [m["step"] for m in la], [m["step"] for m in lb]
assert steps_a == steps_b == list(range(1, steps + 1)), (steps_a, steps_b)
lerr = 0.0
for ma, mb in zip(la, lb):
    assert set(ma["loss"]) == set(mb["loss"]), (ma["loss"], mb["loss"])
    lerr = max([lerr] + [abs(ma["loss"][k] - mb["loss"][k]) for k in ma["loss"]])
    assert abs(ma["grad_norm"] - mb["grad_norm"]) < 1e-5, (ma["grad_norm"], mb["grad_norm"])
    assert ma["tokens"] == mb["tokens"], (ma["tokens"], mb["tokens"])
assert lerr < 1e-5, f"max |loss difference| = {lerr}"
print(f"max |weights difference| {err:.1e}, max |loss difference| {lerr:.1e}, max |B| {moved:.3f}")
