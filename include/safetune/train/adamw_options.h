// AdamW's settings, apart from the optimizer (optimizer.h) so that the run config, which
// builds without LibTorch, can hold them as its optim section (config.h: OptimConfig).
#pragma once

namespace safetune::train {

struct AdamWOptions {
  double lr = 3e-5;  // reference run's value (the reference code's own default is 1e-4)
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // decoupled, as torch.optim.AdamW
  // One pass over the memory per parameter for contiguous fp32 CPU tensors (the same
  // arithmetic as the op-by-op path, which is used for anything else). Not a config
  // field: the two paths give the same numbers.
  bool fused = true;
};

}  // namespace safetune::train
