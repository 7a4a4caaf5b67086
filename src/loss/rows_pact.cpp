// pact's row operations (see row_ops.h): PACT's weighted subset KL on the columns S
// against the gate's mix of the full-context and post-only references.
#include "row_ops.h"

namespace safetune::loss::rows {
namespace {

void check(const ObjectiveSpec& s, const ConstraintInputs& c, int64_t M, int64_t V) {
  const int64_t K = s.S.numel();
  TORCH_CHECK(s.w.dim() == 1 && s.w.size(0) == K, "fused_objective: w must be [K]");
  TORCH_CHECK(c.t.dim() == 1 && c.t.size(0) == M, "fused_objective: t must be [M]");
  TORCH_CHECK(c.z_full.dim() == 2 && c.z_full.size(0) == M && c.z_full.size(1) == K,
              "fused_objective: z_full must be [M, K]");
  if (s.options.reference_mix != ReferenceMix::full)
    TORCH_CHECK(c.z_post.defined() && c.z_post.sizes() == c.z_full.sizes(), "fused_objective: z_post must be [M, K]");
}

// As pact_loss: the gate from the (detached) model logits on S mixes the contexts.
void prepare(const Plan& p, const ObjectiveSpec& s, const ConstraintInputs& c, const at::Tensor& z, ChunkConstraint& k,
             Sums& sums) {
  const auto dev = z.device();
  const bool full = s.options.reference_mix == ReferenceMix::full;
  const at::Tensor zf = c.z_full.index_select(0, k.rows.idx.to(c.z_full.device())).to(dev, at::kFloat);
  const at::Tensor zp =
      full ? at::Tensor() : c.z_post.index_select(0, k.rows.idx.to(c.z_post.device())).to(dev, at::kFloat);
  const at::Tensor gate = gate_values(k.zS, zp, full ? at::Tensor() : p.tt.index_select(0, k.rows.idx), s.options);
  sums.gate.add_(gate.sum().to(at::kDouble));
  k.z_ref = full ? zf : (1 - gate).unsqueeze(1) * zf + gate.unsqueeze(1) * zp;
}

at::Tensor torch_terms(const Plan& p, const ChunkConstraint& k, const RowExp&, at::Tensor&, Sums& sums) {
  const double T = p.T;
  at::Tensor q = at::softmax(k.z_ref / T, -1) * p.w.unsqueeze(0);
  q = q / q.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
  const at::Tensor log_p = at::log_softmax(k.zS / T, -1);
  sums.con.add_(((at::xlogy(q, q) - q * log_p).sum() * (T * T)).to(at::kDouble));
  // d/dzS of T^2 KL = T (softmax(zS / T) sum(q) - q).
  return (log_p.exp() * q.sum(-1, /*keepdim=*/true) - q).mul_(p.grad_scale * T);
}

void dispatch_terms(const Plan& p, const ChunkConstraint& k, const at::Tensor& z, const at::Tensor&, int64_t,
                    cuda::SubsetTermResult& con, at::Tensor&, Sums& sums) {
  const int64_t C = z.size(0);
  con = cuda::subset_kl_rows(z, p.S, all_rows(k, C, k.z_ref), p.w, chunk_mask(k, C, z), p.T, p.grad_scale);
  sums.con.add_(con.losses.sum().to(at::kDouble));
}

void unfused(const UnfusedArgs& a, ObjectiveValues& v) {
  const auto dev = a.hidden.device();
  const ConstraintInputs& c = a.in;
  ConstraintResult r = pact_loss(logits_on_S(a), c.z_full.to(dev), c.z_post.defined() ? c.z_post.to(dev) : at::Tensor(),
                                 a.spec.w.to(dev), c.t.to(dev), a.valid, a.spec.options);
  v.constraint = r.loss;
  v.gate_mean = r.gate_mean;
  v.terms = {r.gate_mean};
}

}  // namespace

const ConstraintRowOps& pact_row_ops() {
  static const ConstraintRowOps ops = [] {
    ConstraintRowOps o;
    o.check = check;
    o.prepare = prepare;
    o.wants_rest = no_rest;
    o.torch_terms = torch_terms;
    o.dispatch_terms = dispatch_terms;
    o.unfused = unfused;
    o.terms = [](const Plan& p, const Sums& sums) { return std::vector<at::Tensor>{gate_mean(p, sums)}; };
    return o;
  }();
  return ops;
}

}  // namespace safetune::loss::rows
