// The small drawing and text helpers every demo world is generated with: a seeded
// generator whose sequence is the same with every standard library, and "{}" templates.
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace safetune::demo {

// Uniform in [0, n): the modulo of a 64-bit draw (bias ~n / 2^64, irrelevant here) so the
// sequence is the same with every standard library (no std:: distributions).
class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  size_t below(size_t n) { return static_cast<size_t>(g_() % n); }
  template <class T>
  const T& pick(const std::vector<T>& v) { return v[below(v.size())]; }
  bool chance(int percent) { return below(100) < static_cast<size_t>(percent); }
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  std::mt19937_64 g_;
};

// Fills each "{}" of `tmpl` in turn with the next of `args` (extra "{}" stay as they are).
inline std::string fill(const std::string& tmpl, const std::vector<std::string>& args) {
  std::string out;
  size_t a = 0;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl.compare(i, 2, "{}") == 0 && a < args.size()) {
      out += args[a++];
      ++i;
    } else {
      out += tmpl[i];
    }
  }
  return out;
}

inline std::string capitalise(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

// A training record {"instruction", "input"?, "output"}.
inline nlohmann::json record(const std::string& instruction, const std::string& output, const std::string& input = "") {
  nlohmann::json r = {{"instruction", instruction}, {"output", output}};
  if (!input.empty()) r["input"] = input;
  return r;
}

// Splits `items` into train / validation / test, holding out `held[0]` and `held[1]`
// (in draw order), then moving back to training any held-out item that `known` rejects
// given the training part (so held-out targets only combine known words).
template <class T, class Known>
std::vector<T> split_three(Rng& rng, std::vector<T> items, const size_t held[2], std::vector<T> out[3], Known known) {
  rng.shuffle(items);
  const size_t n_val = std::min(held[0], items.size()), n_test = std::min(held[1], items.size() - n_val);
  out[1].assign(items.begin(), items.begin() + n_val);
  out[2].assign(items.begin() + n_val, items.begin() + n_val + n_test);
  out[0].assign(items.begin() + n_val + n_test, items.end());
  for (int s : {1, 2}) {
    std::vector<T> kept;
    for (auto& t : out[s]) (known(t, out[0]) ? kept : out[0]).push_back(t);
    out[s] = kept;
  }
  return out[0];
}

}  // namespace safetune::demo
