// Learning-rate schedules (formulas in schedule.h).
#include "safetune/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace safetune::train {

// schedule.type is an enum the config has parsed: every value is a schedule.
Schedule::Schedule(const ScheduleConfig& config, double base_lr, int64_t total_steps)
    : config_(config), base_lr_(base_lr), total_steps_(total_steps) {}

double Schedule::factor(int64_t step, int64_t epoch) const {
  const double warmup = static_cast<double>(config_.warmup_steps);
  const double s = static_cast<double>(step), total = static_cast<double>(total_steps_);
  const bool warming = step < config_.warmup_steps;
  const double ramp = warming ? s / std::max(1.0, warmup) : 1.0;
  const ScheduleType t = config_.type;
  if (t == ScheduleType::constant) return ramp;
  if (t == ScheduleType::step_lr) return ramp * std::pow(config_.gamma, static_cast<double>(epoch));
  if (warming) return ramp;  // transformers: the decay starts once warm-up is over
  if (t == ScheduleType::linear) return std::max(0.0, (total - s) / std::max(1.0, total - warmup));
  const double progress = (s - warmup) / std::max(1.0, total - warmup);  // cosine
  return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * config_.num_cycles * 2.0 * progress)));
}

double Schedule::lr(int64_t step, int64_t epoch) const { return base_lr_ * factor(step, epoch); }

}  // namespace safetune::train
