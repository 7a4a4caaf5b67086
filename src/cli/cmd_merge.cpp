// safetune merge --model DIR --adapter DIR --out DIR: fold a LoRA adapter into the base
// weights (W <- W + alpha/r x B A) and write a complete HF model directory (weights,
// config.json, the base model's tokenizer files), atomically.
#include <cstdio>

#include "command.h"
#include "safetune/core/error.h"
#include "safetune/core/threads.h"
#include "safetune/model/export.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"

namespace {

struct Opts {
  std::string model, adapter, out, dtype;
  bool force = false;
};

safetune::cli::Command cmd("merge", "fold a LoRA adapter into the base weights (HF model dir out)", [](CLI::App& sub) {
  auto o = std::make_shared<Opts>();
  sub.add_option("--model", o->model, "base HF model directory")->required();
  sub.add_option("--adapter", o->adapter, "PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors)")
      ->required();
  sub.add_option("--out", o->out, "output model directory (must not exist unless --force)")->required();
  sub.add_option("--dtype", o->dtype, "stored dtype: float32 | bfloat16 | float16 (default: the base model's)");
  sub.add_flag("--force", o->force, "replace --out if it exists");
  return [o]() -> int {
    using namespace safetune;
    set_compute_threads(0);
    // Merge in fp32 whatever the stored dtype, then cast once.
    model::LoadedModel loaded = model::load_model(o->model, c10::Device(c10::kCPU), at::kFloat);
    const std::string dt = o->dtype.empty() ? loaded.config.torch_dtype : o->dtype;
    const at::ScalarType stored =
        dt.empty() ? at::kFloat : model::parse_torch_dtype(dt, o->dtype.empty() ? o->model + "/config.json" : "--dtype");
    model::LoraSpec spec = model::load_adapter(o->adapter, *loaded.model);
    model::merge_lora(*loaded.model);
    model::write_model_dir(o->out, *loaded.model, o->model, stored, o->force);
    std::printf("merged %s (r %lld, alpha %g, %zu target modules) into %s -> %s\n", o->adapter.c_str(),
                (long long)spec.r, spec.alpha, spec.target_modules.size(), o->model.c_str(), o->out.c_str());
    return 0;
  };
});

}  // namespace
