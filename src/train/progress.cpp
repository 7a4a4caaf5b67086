// Progress bar / periodic lines on stderr.
#include "safetune/train/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace safetune::train {

Progress::Progress(int64_t total_steps, int64_t every, bool tty)
    : total_(total_steps), every_(every < 1 ? 1 : every), tty_(tty) {}

bool Progress::stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

std::string Progress::format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long long t = static_cast<long long>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

void Progress::update(int64_t step, int64_t epoch, double loss, double lr, double tokens_per_s, double eta_s) {
  if (tty_) {
    const int width = 24;
    const int filled = total_ > 0 ? static_cast<int>(width * static_cast<double>(step) / total_) : 0;
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r[%s] %lld/%lld  loss %.4f  lr %.3g  %.0f tok/s  ETA %s   ", bar.c_str(),
                 (long long)step, (long long)total_, loss, lr, tokens_per_s, format_duration(eta_s).c_str());
    std::fflush(stderr);
    drawn_ = true;
    return;
  }
  if (step % every_ != 0 && step != total_) return;
  std::fprintf(stderr, "step %lld/%lld  epoch %lld  loss %.4f  lr %.3g  %.0f tok/s  ETA %s\n", (long long)step,
               (long long)total_, (long long)epoch, loss, lr, tokens_per_s, format_duration(eta_s).c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (tty_ && drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace safetune::train
