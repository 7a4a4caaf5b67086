// Progress display on stderr: on a terminal, one line redrawn with \r (step/total, loss,
// lr, tokens/s, ETA); otherwise a plain line every `every` steps and at the end.
#pragma once
#include <cstdint>
#include <string>

namespace safetune::train {

class Progress {
 public:
  Progress(int64_t total_steps, int64_t every, bool tty);
  static bool stderr_is_tty();
  // After optimizer step `step` (1-based count of steps done).
  void update(int64_t step, int64_t epoch, double loss, double lr, double tokens_per_s, double eta_s);
  void finish();  // ends the redrawn line
  static std::string format_duration(double seconds);

 private:
  int64_t total_, every_;
  bool tty_, drawn_ = false;
};

}  // namespace safetune::train
