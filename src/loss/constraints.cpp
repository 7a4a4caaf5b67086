// The safety constraints (see constraints.h): plain compositions of torch ops.
#include "safetune/loss/constraints.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cmath>

#include "safetune/data/batch.h"

namespace safetune::loss {

namespace {

// Row indices of the valid positions, [n] int64 on `like`'s device.
at::Tensor valid_rows(const at::Tensor& valid, const at::Tensor& like) {
  TORCH_CHECK(valid.dim() == 1 && valid.size(0) == like.size(0), "valid must be [N] matching the logits' rows");
  return valid.to(like.device(), at::kBool).nonzero().view(-1);
}

// A zero that still belongs to the autograd graph of `x` (so backward gives zeros).
at::Tensor graph_zero(const at::Tensor& x) { return x.sum().to(at::kFloat) * 0.0; }

}  // namespace

at::Tensor topp_spread(const at::Tensor& z, double top_p, double temperature) {
  at::NoGradGuard no_grad;
  TORCH_CHECK(z.dim() == 2 && z.size(1) > 0, "topp_spread: expected [N, K] logits");
  at::Tensor p = at::softmax(z.detach().to(at::kDouble) / temperature, -1);
  at::Tensor sorted = std::get<0>(p.sort(-1, /*descending=*/true));
  at::Tensor cum = sorted.cumsum(-1);
  // The count before the cumulative sum reaches top_p, plus the token that reaches it.
  at::Tensor k = (cum < top_p).sum(-1).add(1).clamp_max(z.size(1));
  return k.to(at::kDouble) / double(z.size(1));
}

at::Tensor gate_values(const at::Tensor& z_theta, const at::Tensor& z_post, const at::Tensor& t,
                       const ConstraintOptions& o) {
  at::NoGradGuard no_grad;
  const int64_t n = z_theta.size(0);
  auto opts = at::TensorOptions().dtype(at::kFloat).device(z_theta.device());
  if (o.reference_mix == ReferenceMix::full) return at::zeros({n}, opts);
  if (o.reference_mix == ReferenceMix::post) return at::ones({n}, opts);
  TORCH_CHECK(z_post.defined() && z_post.sizes() == z_theta.sizes(), "gate_values: z_post must match z_theta");
  const GateOptions& g = o.gate;
  at::Tensor I_theta = topp_spread(z_theta, g.top_p, g.temperature);
  at::Tensor I_post = topp_spread(z_post, g.top_p, g.temperature);
  at::Tensor c = at::sigmoid(g.alpha * (I_theta - I_post - g.b));
  if (o.prefix_decay) {
    at::Tensor over = (t.to(z_theta.device(), at::kDouble) - double(g.prefix_n)).clamp_min(0);
    c = c * at::exp(-over / g.prefix_tau);
  }
  return c.to(at::kFloat);
}

at::Tensor weighted_subset_kl(const at::Tensor& z_theta, const at::Tensor& z_ref, const at::Tensor& w,
                              const at::Tensor& valid, double temperature) {
  TORCH_CHECK(z_theta.dim() == 2 && z_ref.sizes() == z_theta.sizes() && w.dim() == 1 && w.size(0) == z_theta.size(1),
              "weighted_subset_kl: expected z_theta, z_ref [N, K] and w [K]");
  at::Tensor idx = valid_rows(valid, z_theta);
  if (idx.numel() == 0) return graph_zero(z_theta);
  const double T = temperature;
  at::Tensor zt = z_theta.index_select(0, idx).to(at::kFloat);
  at::Tensor q;
  {
    at::NoGradGuard no_grad;
    at::Tensor zr = z_ref.detach().index_select(0, idx).to(at::kFloat);
    q = at::softmax(zr / T, -1) * w.to(zr.device(), at::kFloat).unsqueeze(0);
    q = q / q.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
  }
  at::Tensor log_p = at::log_softmax(zt / T, -1);
  // xlogy: 0 * log 0 = 0 on the columns whose weight is 0.
  at::Tensor kl = (at::xlogy(q, q) - q * log_p).sum(-1);
  return kl.mean() * (T * T);
}

ConstraintResult pact_loss(const at::Tensor& z_theta, const at::Tensor& z_full, const at::Tensor& z_post,
                           const at::Tensor& w, const at::Tensor& t, const at::Tensor& valid,
                           const ConstraintOptions& o) {
  TORCH_CHECK(z_theta.dim() == 2 && z_full.sizes() == z_theta.sizes(), "pact_loss: z_theta and z_full must be [N, K]");
  TORCH_CHECK(t.dim() == 1 && t.size(0) == z_theta.size(0), "pact_loss: t must be [N]");
  at::Tensor idx = valid_rows(valid, z_theta);
  ConstraintResult r;
  if (idx.numel() == 0) {
    r.loss = graph_zero(z_theta);
    r.gate_mean = at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(z_theta.device()));
    return r;
  }
  at::Tensor zt = z_theta.index_select(0, idx);
  at::Tensor z_mix, c;
  {
    at::NoGradGuard no_grad;
    at::Tensor zf = z_full.detach().index_select(0, idx).to(at::kFloat);
    const bool full = o.reference_mix == ReferenceMix::full;
    at::Tensor zp = full ? at::Tensor() : z_post.detach().index_select(0, idx).to(at::kFloat);
    c = gate_values(zt.detach(), zp, t.to(idx.device()).index_select(0, idx), o);
    z_mix = full ? zf : (1 - c).unsqueeze(1) * zf + c.unsqueeze(1) * zp;
  }
  at::Tensor all = at::ones({zt.size(0)}, at::TensorOptions().dtype(at::kBool).device(zt.device()));
  r.loss = weighted_subset_kl(zt, z_mix, w, all, o.temperature);
  r.gate_mean = c.mean();
  return r;
}

at::Tensor kl_full_loss(const at::Tensor& logits_theta, const at::Tensor& logits_ref, const at::Tensor& valid,
                        double temperature) {
  TORCH_CHECK(logits_theta.dim() == 2 && logits_ref.sizes() == logits_theta.sizes(),
              "kl_full_loss: expected [N, V] logits for model and reference");
  at::Tensor idx = valid_rows(valid, logits_theta);
  if (idx.numel() == 0) return graph_zero(logits_theta);
  const double T = temperature;
  at::Tensor log_p = at::log_softmax(logits_theta.index_select(0, idx).to(at::kFloat) / T, -1);
  at::Tensor log_r;
  {
    at::NoGradGuard no_grad;
    log_r = at::log_softmax(logits_ref.detach().index_select(0, idx).to(at::kFloat) / T, -1);
  }
  at::Tensor kl = (log_r.exp() * (log_r - log_p)).sum(-1);
  return kl.mean() * (T * T);
}

at::Tensor anchor_loss(const at::Tensor& logits_theta, const at::Tensor& logits_ref, const at::Tensor& S,
                       const at::Tensor& valid) {
  TORCH_CHECK(logits_theta.dim() == 2 && logits_ref.sizes() == logits_theta.sizes() && S.dim() == 1 && S.numel() > 0,
              "anchor_loss: expected [N, V] logits and [K] ids");
  at::Tensor idx = valid_rows(valid, logits_theta);
  if (idx.numel() == 0) return graph_zero(logits_theta);
  at::Tensor cols = S.to(logits_theta.device(), at::kLong);
  at::Tensor lp = at::log_softmax(logits_theta.index_select(0, idx).to(at::kFloat), -1).index_select(1, cols);
  at::Tensor lr;
  {
    at::NoGradGuard no_grad;
    lr = at::log_softmax(logits_ref.detach().index_select(0, idx).to(at::kFloat), -1).index_select(1, cols);
  }
  return (lp - lr).pow(2).mean();
}

BucketReference bucket_reference(const at::Tensor& z_full, const at::Tensor& lse_full, const at::Tensor& z_post,
                                 const at::Tensor& lse_post, const at::Tensor& c, double temperature) {
  at::NoGradGuard no_grad;
  TORCH_CHECK(z_full.dim() == 2 && lse_full.numel() == z_full.size(0),
              "bucket_reference: expected z_full [n, K] and lse_full [n]");
  const double T = temperature;
  // fp64: a_R = 1 - exp(lse_S - lse) loses nothing when a_S is close to 1.
  auto probs = [&](const at::Tensor& z, const at::Tensor& lse, at::Tensor& rest) {
    const at::Tensor l = z.detach().to(at::kDouble) / T;
    const at::Tensor lz = lse.detach().to(l.device(), at::kDouble).reshape({-1, 1});
    rest = at::expm1(l.logsumexp(1, /*keepdim=*/true) - lz).neg_().clamp_min_(0).squeeze(1);
    return (l - lz).exp_();
  };
  BucketReference r;
  r.a = probs(z_full, lse_full, r.a_rest);
  if (c.defined() && z_post.defined()) {
    TORCH_CHECK(z_post.sizes() == z_full.sizes() && lse_post.numel() == z_full.size(0) && c.numel() == z_full.size(0),
                "bucket_reference: expected z_post [n, K], lse_post [n] and c [n]");
    at::Tensor rest_post;
    const at::Tensor a_post = probs(z_post, lse_post, rest_post);
    const at::Tensor cc = c.detach().to(r.a.device(), at::kDouble).reshape({-1, 1});
    r.a = (1 - cc) * r.a + cc * a_post;
    r.a_rest = (1 - cc.squeeze(1)) * r.a_rest + cc.squeeze(1) * rest_post;
  }
  return r;
}

SafetyMassResult safety_mass_loss(const at::Tensor& logits_theta, const at::Tensor& S, const at::Tensor& z_full,
                                  const at::Tensor& lse_full, const at::Tensor& z_post, const at::Tensor& lse_post,
                                  const at::Tensor& t, const at::Tensor& valid, const ConstraintOptions& o) {
  TORCH_CHECK(logits_theta.dim() == 2 && S.dim() == 1 && S.numel() > 0 && z_full.dim() == 2 &&
                  z_full.size(0) == logits_theta.size(0) && z_full.size(1) == S.numel() &&
                  lse_full.numel() == logits_theta.size(0),
              "safety_mass_loss: expected logits [N, V], S [K], z_full [N, K], lse_full [N]");
  const auto fopt = at::TensorOptions().dtype(at::kFloat).device(logits_theta.device());
  SafetyMassResult r;
  r.mass_term = at::zeros({}, fopt);
  r.shape_term = at::zeros({}, fopt);
  r.gate_mean = at::zeros({}, fopt);
  const at::Tensor idx = valid_rows(valid, logits_theta);
  if (idx.numel() == 0) {
    r.loss = graph_zero(logits_theta);
    return r;
  }
  const double T = o.temperature, all_rows = double(logits_theta.size(0));
  const at::Tensor cols = S.to(logits_theta.device(), at::kLong);
  const at::Tensor lt = logits_theta.index_select(0, idx).to(at::kFloat) / T;
  const at::Tensor log_p = at::log_softmax(lt, 1);
  const at::Tensor log_pS = log_p.index_select(1, cols);
  // The rest bucket as the sum of its own probabilities (no cancellation against p_S).
  const at::Tensor p_rest = log_p.exp().index_fill(1, cols, 0.0).sum(1);
  BucketReference ref;
  {
    at::NoGradGuard no_grad;
    auto rows = [&](const at::Tensor& x) { return x.defined() ? x.detach().index_select(0, idx.to(x.device())) : x; };
    at::Tensor c;
    const bool mixed = o.reference_mix != ReferenceMix::full;
    if (mixed) {
      TORCH_CHECK(z_post.defined() && lse_post.defined() && t.defined(),
                  "safety_mass_loss: reference_mix gated / post needs z_post, lse_post and t");
      c = gate_values(logits_theta.detach().index_select(0, idx).index_select(1, cols).to(at::kFloat), rows(z_post),
                      rows(t), o);
      r.gate_mean = c.mean();
    }
    ref = bucket_reference(rows(z_full), rows(lse_full), mixed ? rows(z_post) : at::Tensor(),
                           mixed ? rows(lse_post) : at::Tensor(), c, T);
  }
  const at::Tensor a = ref.a.to(at::kFloat), a_rest = ref.a_rest.to(at::kFloat);
  const at::Tensor log_rest_ratio = a_rest.clamp_min(kRestFloor).log() - p_rest.clamp_min(kRestFloor).log();
  const at::Tensor rows_kl = (at::xlogy(a, a) - a * log_pS).sum(1) + a_rest * log_rest_ratio;
  r.loss = rows_kl.sum() * (T * T / all_rows);
  {
    at::NoGradGuard no_grad;
    const at::Tensor a_S = a.sum(1), log_p_S = log_pS.detach().logsumexp(1);
    const at::Tensor mass = at::xlogy(a_S, a_S) - a_S * log_p_S + a_rest * log_rest_ratio.detach();
    r.mass_term = mass.sum() / all_rows;
    r.shape_term = rows_kl.detach().sum() / all_rows - r.mass_term;
  }
  return r;
}

at::Tensor mass_on_subset(const at::Tensor& logits, const at::Tensor& S) {
  at::NoGradGuard no_grad;
  at::Tensor z = logits.detach().to(at::kFloat);
  at::Tensor cols = S.to(z.device(), at::kLong);
  return at::exp(at::logsumexp(z.index_select(1, cols), -1) - at::logsumexp(z, -1));
}

at::Tensor select_positions(const ConstraintOptions& o, const at::Tensor& t, const at::Tensor& valid,
                            const at::Tensor& ref_mass, const at::Tensor& example) {
  at::Tensor v = valid.to(at::kBool);
  switch (o.positions) {
    case Positions::all:
      return v;
    case Positions::first_n:
      return v & (t.to(v.device()) < o.first_n);
    case Positions::probe:
      TORCH_CHECK(ref_mass.defined() && ref_mass.sizes() == v.sizes(), "select_positions: probe needs ref_mass [N]");
      return v & (ref_mass.to(v.device()) >= o.probe_tau);
    case Positions::safety_start: {
      TORCH_CHECK(ref_mass.defined() && ref_mass.sizes() == v.sizes() && example.defined() &&
                      example.sizes() == v.sizes(),
                  "select_positions: safety_start needs ref_mass [N] and example [N]");
      if (v.numel() == 0) return v;
      const at::Tensor ex = example.to(at::kCPU, at::kLong);
      const at::Tensor first = t.to(at::kCPU).eq(0);
      // Each example's mass at its first response position; an example without one (its
      // response cut off) is left unconstrained.
      at::Tensor start = at::zeros({ex.max().item<int64_t>() + 1}, at::kFloat);
      start.index_put_({ex.index({first})}, ref_mass.to(at::kCPU, at::kFloat).index({first}));
      return v & start.index_select(0, ex).ge(o.probe_tau).to(v.device());
    }
  }
  TORCH_CHECK(false, "select_positions: unknown position selection");
}

ResponsePositions response_positions(const data::Batch& batch) {
  at::Tensor rs = batch.response_start.to(at::kCPU, at::kLong).contiguous();
  at::Tensor len = batch.lengths.to(at::kCPU, at::kLong).contiguous();
  at::Tensor prs = batch.post_response_start.to(at::kCPU, at::kLong).contiguous();
  std::vector<int64_t> rows, cols, post_cols, ts;
  const int64_t B = rs.size(0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t start = rs[b].item<int64_t>(), n = len[b].item<int64_t>() - start;
    const int64_t post_start = prs[b].item<int64_t>();
    // Position p predicts token p + 1: the response tokens [start, start + n) are
    // predicted at [start - 1, start + n - 1).
    for (int64_t t = 0; t < n; ++t) {
      rows.push_back(b);
      cols.push_back(start - 1 + t);
      post_cols.push_back(post_start - 1 + t);
      ts.push_back(t);
    }
  }
  ResponsePositions r;
  r.rows = at::tensor(rows, at::kLong);
  r.cols = at::tensor(cols, at::kLong);
  r.post_cols = at::tensor(post_cols, at::kLong);
  r.t = at::tensor(ts, at::kLong);
  return r;
}

}  // namespace safetune::loss
