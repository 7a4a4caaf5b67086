// The fused-loss CUDA kernels against a plain CPU reference in double precision, on random
// bf16 inputs. The reference reads the same bf16 values (rounded on the host, bit by bit
// here, not with CUDA's conversion), so what is compared is the kernels' fp32 arithmetic
// and, for the logits gradient, its rounding to bf16.
//
// Tolerances: per-row losses and logsumexps 1e-4 relative + 1e-4 absolute (fp32 sums over
// up to 128k terms); the bf16 logits gradient 2^-7 relative + 1e-7 absolute (one bf16
// rounding is 2^-9 relative; the sum with the subset gradient rounds again); the fp32
// subset gradients 1e-4 relative to the row's largest entry.
//
// Exit status: 0 all pass, 1 a mismatch, 77 no GPU (skipped). `--bench` also times the
// cross-entropy kernel on a 4096 x 128256 chunk and prints its memory bandwidth.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "safetune/cuda/loss_kernels.h"

namespace {

using safetune::cuda::AnchorRows;
using safetune::cuda::CrossEntropyRows;
using safetune::cuda::SafetyMassRows;
using safetune::cuda::SubsetKl;

#define CHECK_CUDA(x)                                                                            \
  do {                                                                                           \
    cudaError_t e_ = (x);                                                                        \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

// bf16 as the upper 16 bits of an fp32, rounded to nearest even (no NaNs are generated).
uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float bf16_value(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// A device buffer that frees itself.
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { CHECK_CUDA(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T))); }
  Dev(const std::vector<T>& h) : Dev(h.size()) { upload(h); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  void upload(const std::vector<T>& h) { CHECK_CUDA(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    CHECK_CUDA(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

struct Checker {
  int failures = 0;
  // Counts the entries off by more than rel * |ref| + abs; reports the worst one.
  void close(const char* what, const std::vector<double>& got, const std::vector<double>& ref, double rel, double abs) {
    double worst = 0, worst_ref = 0, worst_got = 0;
    size_t bad = 0, at = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      const double d = std::fabs(got[i] - ref[i]);
      if (!(d <= rel * std::fabs(ref[i]) + abs)) ++bad;  // NaN counts as bad
      if (!(d <= worst)) {
        worst = d;
        worst_ref = ref[i];
        worst_got = got[i];
        at = i;
      }
    }
    std::printf("%s %-44s max abs diff %.3g (at %zu: got %.6g, ref %.6g), %zu of %zu outside tolerance\n",
                bad ? "FAIL" : "PASS", what, worst, at, worst_got, worst_ref, bad, ref.size());
    if (bad) ++failures;
  }
};

// A random problem: bf16 logits [n, ld] (first V columns used), targets with some ignored,
// K distinct safety columns, reference logits on S, weights with zeros, a validity mask.
struct Problem {
  int64_t n, V, ld, K;
  std::vector<uint16_t> logits;
  std::vector<int64_t> targets, cols;
  std::vector<float> z_ref, w, logp_ref;
  std::vector<float> a_ref, a_rest;  // safety_mass: a reference's probabilities on S, rest
  std::vector<uint8_t> valid;
};

Problem make_problem(int64_t n, int64_t V, int64_t ld, int64_t K, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_int_distribution<int64_t> col(0, V - 1);
  Problem p{n, V, ld, K};
  p.logits.assign(n * ld, bf16_bits(-1000.f));  // padding columns: must never be read
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < V; ++i) p.logits[r * ld + i] = bf16_bits(scale * normal(rng));
  for (int64_t r = 0; r < n; ++r) p.targets.push_back(r % 5 == 3 ? -100 : col(rng));
  std::vector<int64_t> perm(V);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  p.cols.assign(perm.begin(), perm.begin() + K);
  // Some safety columns are also targets, so the subset and one-hot gradients meet.
  for (int64_t r = 0; r < n; r += 4) p.targets[r] = p.cols[r % K];
  for (int64_t i = 0; i < n * K; ++i) p.z_ref.push_back(scale * normal(rng));
  for (int64_t j = 0; j < K; ++j) p.w.push_back(j % 7 == 2 ? 0.f : std::fabs(normal(rng)));
  for (int64_t r = 0; r < n; ++r) p.valid.push_back(r % 6 == 1 ? 0 : 1);
  // Reference log-probabilities on S of some other full-vocabulary distribution: negative,
  // around -log V.
  for (int64_t i = 0; i < n * K; ++i) p.logp_ref.push_back(-std::log(double(V)) + normal(rng));
  // A reference's buckets: probabilities on S with a total a_S spread over (0, 1), rest 1 - a_S.
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  for (int64_t r = 0; r < n; ++r) {
    std::vector<float> e(K);
    float sum = 0;
    for (int64_t j = 0; j < K; ++j) sum += e[j] = std::exp(2.f * normal(rng));
    const float a_S = r % 7 == 0 ? 1.f : 0.98f * unit(rng);  // some rows: all of it on S
    for (int64_t j = 0; j < K; ++j) p.a_ref.push_back(a_S * e[j] / sum);
    p.a_rest.push_back(1.f - a_S);
  }
  return p;
}

double z_at(const Problem& p, int64_t r, int64_t i) { return bf16_value(p.logits[r * p.ld + i]); }

double row_lse(const Problem& p, int64_t r) {
  double m = -INFINITY, s = 0;
  for (int64_t i = 0; i < p.V; ++i) m = std::max(m, z_at(p, r, i));
  for (int64_t i = 0; i < p.V; ++i) s += std::exp(z_at(p, r, i) - m);
  return m + std::log(s);
}

// Reference subset KL of one row: loss and gradient dloss/dz_theta[S] (unscaled).
void ref_subset_kl(const Problem& p, int64_t r, double T, double& loss, std::vector<double>& grad) {
  const int64_t K = p.K;
  std::vector<double> zt(K), zr(K), lp(K), q(K);
  double mt = -INFINITY, mr = -INFINITY;
  for (int64_t j = 0; j < K; ++j) {
    zt[j] = z_at(p, r, p.cols[j]) / T;
    zr[j] = p.z_ref[r * K + j] / T;
    mt = std::max(mt, zt[j]);
    mr = std::max(mr, zr[j]);
  }
  double st = 0, sq = 0;
  for (int64_t j = 0; j < K; ++j) {
    st += std::exp(zt[j] - mt);
    q[j] = std::exp(zr[j] - mr) * p.w[j];
    sq += q[j];
  }
  loss = 0;
  double qsum = 0;
  for (int64_t j = 0; j < K; ++j) {
    q[j] = sq > 0 ? q[j] / sq : 0;
    lp[j] = zt[j] - mt - std::log(st);
    if (q[j] > 0) loss += q[j] * (std::log(q[j]) - lp[j]);
    qsum += q[j];
  }
  loss *= T * T;
  grad.assign(K, 0);
  for (int64_t j = 0; j < K; ++j) grad[j] = T * (std::exp(lp[j]) * qsum - q[j]);
}

// Reference anchor of one row: loss, gradient on S and the coefficient on softmax (unscaled).
void ref_anchor(const Problem& p, int64_t r, double lse, double& loss, std::vector<double>& grad, double& coef) {
  loss = 0;
  double sum = 0;
  grad.assign(p.K, 0);
  for (int64_t j = 0; j < p.K; ++j) {
    const double a = (z_at(p, r, p.cols[j]) - lse) - p.logp_ref[r * p.K + j];
    loss += a * a;
    sum += a;
    grad[j] = 2 * a;
  }
  coef = -2 * sum;
}

// Reference safety_mass of one row at T = 1, from the definition over the whole row (p_R
// summed over the columns outside S): loss, mass term, and dloss/dz for every column.
void ref_safety_mass(const Problem& p, int64_t r, double lse, double floor, double& loss, double& mass,
                     std::vector<double>& grad_row) {
  std::vector<bool> in_S(p.V, false);
  for (int64_t c : p.cols) in_S[c] = true;
  double p_rest = 0, p_S = 0, a_S = 0;
  for (int64_t i = 0; i < p.V; ++i) (in_S[i] ? p_S : p_rest) += std::exp(z_at(p, r, i) - lse);
  const double a_R = p.a_rest[r];
  const double A_R = std::max(a_R, floor), P_R = std::max(p_rest, floor);
  loss = a_R * std::log(A_R / P_R);
  for (int64_t j = 0; j < p.K; ++j) {
    const double a = p.a_ref[r * p.K + j];
    a_S += a;
    if (a > 0) loss += a * (std::log(a) - (z_at(p, r, p.cols[j]) - lse));
  }
  mass = (a_S > 0 ? a_S * std::log(a_S / p_S) : 0) + a_R * std::log(A_R / P_R);
  grad_row.assign(p.V, 0);
  for (int64_t i = 0; i < p.V; ++i) grad_row[i] = std::exp(z_at(p, r, i) - lse) * (1 - A_R / P_R);
  for (int64_t j = 0; j < p.K; ++j)
    grad_row[p.cols[j]] = std::exp(z_at(p, r, p.cols[j]) - lse) - p.a_ref[r * p.K + j];
}

std::vector<double> as_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Which combination of terms a case runs (the three ways the fused op chains the kernels).
enum class Terms { kCrossEntropy, kPact, kAnchor, kSafetyMass };

void run_case(Checker& ck, const char* name, const Problem& p, Terms terms, float T, bool zero_weights) {
  std::printf("-- %s: n %lld, V %lld, ld %lld, K %lld\n", name, (long long)p.n, (long long)p.V, (long long)p.ld,
              (long long)p.K);
  const int64_t n = p.n, K = p.K;
  std::vector<float> w = p.w;
  if (zero_weights) std::fill(w.begin(), w.end(), 0.f);
  int64_t counted = 0, constrained = 0;
  for (int64_t r = 0; r < n; ++r) {
    counted += p.targets[r] != -100;
    constrained += p.valid[r] != 0;
  }
  const double ce_scale = 1.0 / std::max<int64_t>(counted, 1);
  const double lambda = 0.7;
  const double kl_scale = lambda / std::max<int64_t>(constrained, 1);
  const double anchor_scale = lambda / (std::max<int64_t>(constrained, 1) * double(K));

  Dev<uint16_t> logits(p.logits);
  Dev<int64_t> targets(p.targets), cols(p.cols);
  Dev<float> z_ref(p.z_ref), wd(w), logp_ref(p.logp_ref);
  Dev<uint8_t> valid(p.valid);
  Dev<float> losses(n), lse(n), sub_losses(n), sub_grad(n * K), row_coef(n), mass_terms(n);
  Dev<float> a_ref(p.a_ref), a_rest(p.a_rest);
  // safety_mass: the mean over every response row (all n), as the fused op takes it.
  const double mass_scale = lambda / double(n);
  const double rest_floor = 1e-6;
  auto* z = reinterpret_cast<__nv_bfloat16*>(logits.p);

  if (terms == Terms::kPact) {
    SubsetKl a;
    a.z_theta = z, a.ld_theta = p.ld, a.cols = cols.p, a.z_ref = z_ref.p, a.ld_ref = K, a.w = wd.p;
    a.valid = valid.p, a.n = n, a.K = K, a.temperature = T, a.grad_scale = float(kl_scale);
    a.losses = sub_losses.p, a.grad = sub_grad.p;
    safetune::cuda::subset_kl_rows(a, nullptr);
  }
  CrossEntropyRows ce;
  ce.logits = z, ce.n = n, ce.V = p.V, ce.ld = p.ld, ce.targets = targets.p, ce.grad_scale = float(ce_scale);
  ce.losses = losses.p, ce.lse_out = lse.p;
  if (terms == Terms::kAnchor || terms == Terms::kSafetyMass) {
    CrossEntropyRows stats = ce;  // the logsumexps first, logits untouched
    stats.write_grad = false;
    stats.losses = nullptr;
    safetune::cuda::cross_entropy_rows(stats, nullptr);
    ce.lse_in = lse.p;
    ce.row_coef = row_coef.p;
    ce.lse_out = nullptr;
  }
  if (terms == Terms::kSafetyMass) {
    SafetyMassRows a;
    a.z_theta = z, a.ld_theta = p.ld, a.cols = cols.p, a.lse_theta = lse.p, a.a = a_ref.p, a.ld_ref = K;
    a.a_rest = a_rest.p, a.valid = valid.p, a.n = n, a.K = K, a.grad_scale = float(mass_scale);
    a.rest_floor = float(rest_floor);
    a.losses = sub_losses.p, a.mass_terms = mass_terms.p, a.grad = sub_grad.p, a.row_coef = row_coef.p;
    safetune::cuda::safety_mass_rows(a, nullptr);
  }
  if (terms == Terms::kAnchor) {
    AnchorRows a;
    a.z_theta = z, a.ld_theta = p.ld, a.cols = cols.p, a.lse_theta = lse.p, a.logp_ref = logp_ref.p, a.ld_ref = K;
    a.valid = valid.p, a.n = n, a.K = K, a.grad_scale = float(anchor_scale);
    a.losses = sub_losses.p, a.grad = sub_grad.p, a.row_coef = row_coef.p;
    safetune::cuda::anchor_rows(a, nullptr);
  }
  safetune::cuda::cross_entropy_rows(ce, nullptr);
  if (terms != Terms::kCrossEntropy) safetune::cuda::add_subset_grad(z, p.ld, cols.p, sub_grad.p, n, K, nullptr);
  CHECK_CUDA(cudaDeviceSynchronize());

  // The reference, row by row.
  std::vector<double> ref_loss(n), ref_lse(n), ref_sub_loss(n), ref_sub_grad(n * K), ref_grad(n * p.V), ref_mass(n);
  std::vector<double> got_grad(n * p.V);
  const std::vector<uint16_t> out = logits.download();
  bool padding_kept = true;
  for (int64_t r = 0; r < n; ++r) {
    const double l = row_lse(p, r);
    ref_lse[r] = l;
    const int64_t t = p.targets[r];
    ref_loss[r] = t == -100 ? 0 : l - z_at(p, r, t);
    const double c = t == -100 ? 0 : ce_scale;
    double coef = c, sub_loss = 0;
    std::vector<double> g(K, 0);
    const bool on = p.valid[r] != 0;
    if (terms == Terms::kPact && on) {
      ref_subset_kl(p, r, T, sub_loss, g);
      for (auto& x : g) x *= kl_scale;
    }
    if (terms == Terms::kAnchor && on) {
      double a_coef;
      ref_anchor(p, r, l, sub_loss, g, a_coef);
      for (auto& x : g) x *= anchor_scale;
      coef += a_coef * anchor_scale;
    }
    std::vector<double> mass_grad;  // safety_mass: dloss/dz over the whole row
    if (terms == Terms::kSafetyMass && on) {
      ref_safety_mass(p, r, l, rest_floor, sub_loss, ref_mass[r], mass_grad);
      // The sparse part the kernel hands back: the gradient on S less the dense part.
      double p_rest = 0;
      std::vector<bool> in_S(p.V, false);
      for (int64_t cc : p.cols) in_S[cc] = true;
      for (int64_t i = 0; i < p.V; ++i)
        if (!in_S[i]) p_rest += std::exp(z_at(p, r, i) - l);
      const double c_r = 1 - std::max<double>(p.a_rest[r], rest_floor) / std::max(p_rest, rest_floor);
      for (int64_t j = 0; j < K; ++j)
        g[j] = mass_scale * (mass_grad[p.cols[j]] - c_r * std::exp(z_at(p, r, p.cols[j]) - l));
    }
    ref_sub_loss[r] = sub_loss;
    for (int64_t j = 0; j < K; ++j) ref_sub_grad[r * K + j] = g[j];
    for (int64_t i = 0; i < p.V; ++i) ref_grad[r * p.V + i] = std::exp(z_at(p, r, i) - l) * coef - (i == t ? c : 0);
    if (terms == Terms::kSafetyMass) {
      for (int64_t i = 0; i < p.V && on; ++i) ref_grad[r * p.V + i] += mass_scale * mass_grad[i];
    } else if (terms != Terms::kCrossEntropy) {
      for (int64_t j = 0; j < K; ++j) ref_grad[r * p.V + p.cols[j]] += g[j];
    }
    for (int64_t i = 0; i < p.V; ++i) got_grad[r * p.V + i] = bf16_value(out[r * p.ld + i]);
    for (int64_t i = p.V; i < p.ld; ++i) padding_kept &= out[r * p.ld + i] == p.logits[r * p.ld + i];
  }
  ck.close("cross-entropy loss per row", as_double(losses.download()), ref_loss, 1e-4, 1e-4);
  ck.close("row logsumexp", as_double(lse.download()), ref_lse, 1e-4, 1e-4);
  if (terms != Terms::kCrossEntropy) {
    const char* what = terms == Terms::kPact       ? "subset KL loss per row"
                       : terms == Terms::kAnchor   ? "anchor loss per row"
                                                   : "safety_mass loss per row";
    ck.close(what, as_double(sub_losses.download()), ref_sub_loss, 1e-4, 1e-5);
    if (terms == Terms::kSafetyMass)
      ck.close("safety_mass mass term per row", as_double(mass_terms.download()), ref_mass, 1e-4, 1e-5);
    // fp32 subset gradients: relative to the largest entry (p * Q - q cancels).
    double gmax = 0;
    for (double x : ref_sub_grad) gmax = std::max(gmax, std::fabs(x));
    ck.close("subset gradient [n, K] (fp32)", as_double(sub_grad.download()), ref_sub_grad, 1e-4, 1e-4 * gmax);
  }
  ck.close("logits gradient in place (bf16)", got_grad, ref_grad, 1.0 / 128, 1e-7);
  std::printf("%s padding columns beyond V untouched\n", padding_kept ? "PASS" : "FAIL");
  if (!padding_kept) ++ck.failures;
}

// Times the cross-entropy kernel alone (gradient written) and reports the bytes it moves.
void bench() {
  const int64_t n = 4096, V = 128256;
  Problem p = make_problem(64, V, V, 50, 3.f, 7);  // 64 distinct rows, tiled over n
  std::vector<uint16_t> big(n * V);
  for (int64_t r = 0; r < n; ++r) std::copy_n(p.logits.begin() + (r % 64) * V, V, big.begin() + r * V);
  std::vector<int64_t> targets(n);
  for (int64_t r = 0; r < n; ++r) targets[r] = p.targets[r % 64];
  Dev<uint16_t> logits(big);
  Dev<int64_t> t(targets);
  Dev<float> losses(n);
  CrossEntropyRows ce;
  ce.logits = reinterpret_cast<__nv_bfloat16*>(logits.p), ce.n = n, ce.V = V, ce.ld = V, ce.targets = t.p;
  ce.grad_scale = 1.f / n, ce.losses = losses.p;
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  float best = 1e30f;
  for (int it = 0; it < 6; ++it) {
    logits.upload(big);  // the kernel overwrites its input
    CHECK_CUDA(cudaEventRecord(a));
    safetune::cuda::cross_entropy_rows(ce, nullptr);
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    if (it > 0) best = std::min(best, ms);
  }
  const double bytes = 3.0 * n * V * 2;  // two reads and one write of bf16
  std::printf("{\"kernel\": \"cross_entropy_rows\", \"n\": %lld, \"V\": %lld, \"ms\": %.4f, \"GB_per_s\": %.1f}\n",
              (long long)n, (long long)V, best, bytes / (best * 1e-3) / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);

  Checker ck;
  // Odd sizes: rows not a multiple of the block's warps, V not a multiple of the 8-wide
  // tiles, a padded leading dimension that breaks 16-byte alignment of odd rows.
  const Problem small = make_problem(37, 1001, 1003, 13, 4.f, 1);
  const Problem vocab = make_problem(24, 128256, 128256, 50, 3.f, 2);
  const Problem wide_k = make_problem(19, 32000, 32008, 300, 2.f, 3);
  run_case(ck, "cross-entropy, small odd shapes", small, Terms::kCrossEntropy, 1.f, false);
  run_case(ck, "cross-entropy, Llama-3 vocabulary", vocab, Terms::kCrossEntropy, 1.f, false);
  run_case(ck, "pact subset KL T=2, small odd shapes", small, Terms::kPact, 2.f, false);
  run_case(ck, "pact subset KL T=2, Llama-3 vocabulary", vocab, Terms::kPact, 2.f, false);
  run_case(ck, "pact subset KL T=0.5, K=300", wide_k, Terms::kPact, 0.5f, false);
  run_case(ck, "pact subset KL, every weight 0", small, Terms::kPact, 2.f, true);
  run_case(ck, "anchor, small odd shapes", small, Terms::kAnchor, 1.f, false);
  run_case(ck, "anchor, Llama-3 vocabulary", vocab, Terms::kAnchor, 1.f, false);
  run_case(ck, "safety_mass, small odd shapes", small, Terms::kSafetyMass, 1.f, false);
  run_case(ck, "safety_mass, Llama-3 vocabulary", vocab, Terms::kSafetyMass, 1.f, false);
  run_case(ck, "safety_mass T=1, K=300", wide_k, Terms::kSafetyMass, 1.f, false);
  if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) bench();
  std::printf("%s: %d check(s) failed\n", ck.failures ? "FAIL" : "PASS", ck.failures);
  return ck.failures ? 1 : 0;
}
