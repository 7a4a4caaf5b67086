// pact's gate c_t (constraints.h: gate_values) and its settings, apart from the torch ops so
// that the run config, which builds without LibTorch, can hold them as its
// objective.gate section (train/config.h: GateConfig).
//   c_t = sigmoid(alpha * (I_theta - I_post - b)) x exp(-max(t - N, 0) / tau_d),
//   I = k_p / |S|, k_p the tokens of S in the nucleus of mass top_p of softmax(z / T_g).
#pragma once
#include <cstdint>

namespace safetune::loss {

struct GateOptions {
  double alpha = 2.0;
  double b = 0.0;
  double top_p = 0.9;        // nucleus mass defining the spread I = k_p / |S|
  double temperature = 1.0;  // T_g of the softmax the spread is measured on
  int64_t prefix_n = 8;      // N: positions t <= N keep the full gate weight
  double prefix_tau = 8.0;   // tau_d: decay exp(-max(t - N, 0) / tau_d) after that
};

}  // namespace safetune::loss
