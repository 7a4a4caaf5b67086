"""The real libraries as references: Hugging Face transformers' own *ForCausalLM classes and
peft, on tiny random models that transformers itself writes (save_pretrained, its current
config format). Beside hf_forward.py, the hand-written independent reference.

  make   --arch ARCH --out DIR --seed N [--config JSON] [--dtype float32|bfloat16] [--std S]
         a random model of the family's config class (kwargs from JSON over small shapes),
         weights ~ N(0, S^2) (S 0.2), norm weights 1 + N(0, S^2) (Gemma: N(0, S^2), as it
         scales by 1 + w), saved with save_pretrained
  logits --model DIR --ids 1,2,3 --compare FILE [--adapter DIR] [--tol T] [--expect-differ]
         transformers' fp32 logits (eager attention; with a peft adapter on top) against the
         "logits" tensor of FILE (`safetune logits`); prints the max abs difference; exit 1
         when it exceeds T (with --expect-differ: when it does not)
  adapter --model DIR --out DIR --seed N --targets q_proj,v_proj [--r 4] [--alpha 8]
         a LoRA adapter made by peft (get_peft_model) with random nonzero A and B, saved
         with save_pretrained
  merge  --model DIR --adapter DIR --compare DIR [--tol T]
         peft's merge_and_unload against the model directory `safetune merge` wrote:
         the max abs difference over every weight (and the same set of weights)
  batch  FILE
         one of the above per line of FILE ("NAME COMMAND ARGS...", shell quoting), all in
         this one process (importing transformers once); prints "NAME<tab>PASS|FAIL<tab>
         message" per line and exits 0 (the caller judges)
"""
import argparse
import json
import sys

import torch

ARCHS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM"),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def quiet_transformers():
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def make(a):
    transformers = quiet_transformers()
    config_cls, model_cls = (getattr(transformers, n) for n in ARCHS[a.arch])
    kwargs = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if a.arch == "phi3":  # Phi3Config's pad_token_id default (32000) is outside a tiny vocabulary
        kwargs.update(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    kwargs.update(json.loads(a.config))
    config = config_cls(**kwargs)
    torch.manual_seed(a.seed)
    model = model_cls(config).eval()
    gemma = a.arch.startswith("gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # Gemma scales by 1 + w, the others by w
                p.copy_((0.0 if gemma else 1.0) + a.std * torch.randn_like(p))
            else:
                p.copy_(a.std * torch.randn_like(p))
    model.to(DTYPES[a.dtype]).save_pretrained(a.out)
    return True, f"{model_cls.__name__} ({sum(p.numel() for p in model.parameters())} parameters) -> {a.out}"


def load_model(path):
    transformers = quiet_transformers()
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def read_tensors(path):
    from safetensors.torch import load_file
    return load_file(path)


def logits(a):
    model = load_model(a.model)
    if a.adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, a.adapter).eval()
    ids = torch.tensor([[int(x) for x in a.ids.split(",")]])
    with torch.no_grad():
        ref = model(input_ids=ids).logits[0].float()
    ours = read_tensors(a.compare)["logits"].float()
    if ours.shape != ref.shape:
        return False, f"shape {tuple(ours.shape)} vs transformers' {tuple(ref.shape)}"
    diff = (ours - ref).abs().max().item()
    what = type(model.get_base_model() if a.adapter else model).__name__ + (" + peft adapter" if a.adapter else "")
    ok = diff > a.tol if a.expect_differ else diff <= a.tol
    return ok, f"max |safetune - {what}| = {diff:.3e} (tol {a.tol:g}, logits up to {ref.abs().max().item():.2f})"


def adapter(a):
    from peft import LoraConfig, get_peft_model
    model = load_model(a.model)
    cfg = LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=0.0, target_modules=a.targets.split(","),
                     task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    torch.manual_seed(a.seed)
    n = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:  # B is zero at init: make both random
                p.copy_(0.1 * torch.randn_like(p))
                n += 1
    model.save_pretrained(a.out)
    return True, f"peft adapter: {n} LoRA tensors (r {a.r}, alpha {a.alpha}, {a.targets}) -> {a.out}"


def merge(a):
    from peft import PeftModel
    model = PeftModel.from_pretrained(load_model(a.model), a.adapter).merge_and_unload().eval()
    ref = {k: v.float() for k, v in model.state_dict().items()}
    import glob
    ours = {}
    for f in sorted(glob.glob(f"{a.compare}/*.safetensors")):
        ours.update({k: v.float() for k, v in read_tensors(f).items()})
    # A tied lm_head is the embedding: transformers lists it, a tied checkpoint omits it.
    if model.config.tie_word_embeddings and "lm_head.weight" not in ours:
        ref.pop("lm_head.weight", None)
    if set(ours) != set(ref):
        return False, (f"weights differ: only safetune's: {sorted(set(ours) - set(ref))}, "
                       f"only peft's: {sorted(set(ref) - set(ours))}")
    base = {k: v.float() for k, v in load_model(a.model).state_dict().items()}
    worst, changed = 0.0, 0
    for k in ref:
        worst = max(worst, (ours[k] - ref[k]).abs().max().item())
        changed += int(not torch.equal(ref[k], base[k]))
    if changed == 0:
        return False, "peft's merge changed no weight"
    return worst <= a.tol, (f"max |safetune merge - peft merge_and_unload| = {worst:.3e} over {len(ref)} weights "
                            f"({changed} changed by the adapter; tol {a.tol:g})")


def batch(a):
    import shlex
    for line in open(a.file, encoding="utf-8"):
        if not line.strip():
            continue
        name, *argv = shlex.split(line)
        try:
            sub = parser().parse_args(argv)
            ok, msg = sub.run(sub)
        except BaseException as e:  # noqa: BLE001 - one case's failure is that case's verdict
            ok, msg = False, f"{type(e).__name__}: {e}"
        print(f"{name}\t{'PASS' if ok else 'FAIL'}\t{msg}", flush=True)
    return True, ""


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--arch", required=True, choices=sorted(ARCHS))
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, required=True)
    m.add_argument("--config", default="{}")
    m.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    m.add_argument("--std", type=float, default=0.2)
    m.set_defaults(run=make)
    lg = sub.add_parser("logits")
    lg.add_argument("--model", required=True)
    lg.add_argument("--ids", required=True)
    lg.add_argument("--compare", required=True)
    lg.add_argument("--adapter")
    lg.add_argument("--tol", type=float, default=1e-4)
    lg.add_argument("--expect-differ", action="store_true")
    lg.set_defaults(run=logits)
    ad = sub.add_parser("adapter")
    ad.add_argument("--model", required=True)
    ad.add_argument("--out", required=True)
    ad.add_argument("--seed", type=int, required=True)
    ad.add_argument("--targets", required=True)
    ad.add_argument("--r", type=int, default=4)
    ad.add_argument("--alpha", type=float, default=8)
    ad.set_defaults(run=adapter)
    mg = sub.add_parser("merge")
    mg.add_argument("--model", required=True)
    mg.add_argument("--adapter", required=True)
    mg.add_argument("--compare", required=True)
    mg.add_argument("--tol", type=float, default=1e-5)
    mg.set_defaults(run=merge)
    bt = sub.add_parser("batch")
    bt.add_argument("file")
    bt.set_defaults(run=batch)
    return p


def main():
    a = parser().parse_args()
    torch.set_num_threads(1)
    ok, msg = a.run(a)
    if msg:
        print(msg)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
