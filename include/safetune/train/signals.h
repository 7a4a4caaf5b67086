// SIGINT / SIGTERM as a request to stop: the handlers only set a flag, which the training
// loop reads after each optimizer step (it then saves a checkpoint and exits cleanly).
// A second signal of the same kind while stopping gets the default action back.
#pragma once

namespace safetune::train {

class StopSignals {
 public:
  StopSignals();   // installs the handlers and clears the flag
  ~StopSignals();  // restores the previous handlers
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static bool requested();
  static int signal_number();  // the signal received, 0 if none
  static void request(int sig);  // as if `sig` had arrived (tests)
};

}  // namespace safetune::train
