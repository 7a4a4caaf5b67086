// Learning-rate schedules: lr(step, epoch) = base_lr x factor.
//
// The factors are those of transformers' get_constant_schedule_with_warmup,
// get_linear_schedule_with_warmup and get_cosine_schedule_with_warmup (`step` counts
// optimizer steps already taken, so the first step uses step = 0), and torch's StepLR
// stepped once per epoch (factor gamma^epoch, epoch counted from 0). Warm-up, when asked,
// applies to every type: factor x step / warmup_steps while step < warmup_steps.
//   constant: 1
//   linear:   max(0, (total - step) / max(1, total - warmup))
//   cosine:   max(0, 0.5 (1 + cos(pi x num_cycles x 2 x progress))),
//             progress = (step - warmup) / max(1, total - warmup)
//   step_lr:  gamma^epoch
#pragma once
#include <cstdint>

#include "safetune/train/config.h"

namespace safetune::train {

class Schedule {
 public:
  // `total_steps`: optimizer steps of the whole run (linear and cosine decay to it).
  Schedule(const ScheduleConfig& config, double base_lr, int64_t total_steps);
  double lr(int64_t step, int64_t epoch) const;
  double factor(int64_t step, int64_t epoch) const;

 private:
  ScheduleConfig config_;
  double base_lr_;
  int64_t total_steps_;
};

}  // namespace safetune::train
