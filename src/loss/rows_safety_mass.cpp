// safety_mass's row operations (see row_ops.h): the KL over |S|+1 buckets (each safety
// token's absolute probability and the rest of the vocabulary) against the reference's,
// given as its logits on S and its log-sum-exps over the vocabulary.
//
// Its gradient for the logits has a dense part, T c p_i on every column with
// c = 1 - a_R / p_R, and a sparse part T (p_j (1 - c) - a_j) on S. At T = 1 (the default)
// p is CE's softmax: the dense part joins CE's per-row coefficient and the row costs one
// K-column pass more than CE alone (the rest mass comes out of CE's own exp pass). At
// T != 1 p = softmax(z / T) needs its own pass: one [n, V] buffer per chunk, made in
// step 1, for the torch ops and the dispatch alike (the CUDA kernels cover T = 1).
#include "row_ops.h"

namespace safetune::loss::rows {
namespace {

void check(const ObjectiveSpec& s, const ConstraintInputs& c, int64_t M, int64_t V) {
  const int64_t K = s.S.numel();
  TORCH_CHECK(c.z_full.dim() == 2 && c.z_full.size(0) == M && c.z_full.size(1) == K && c.lse_full.defined() &&
                  c.lse_full.numel() == M,
              "fused_objective: safety_mass needs z_full [M, K] and lse_full [M]");
  if (s.options.reference_mix != ReferenceMix::full)
    TORCH_CHECK(c.z_post.defined() && c.z_post.sizes() == c.z_full.sizes() && c.lse_post.defined() &&
                    c.lse_post.numel() == M && c.t.dim() == 1 && c.t.size(0) == M,
                "fused_objective: safety_mass with reference_mix ", name_of(s.options.reference_mix),
                " needs z_post [M, K], lse_post [M] and t [M]");
}

// The rows' loss (into con, their mass terms into mass) and gradient, given the row max
// of z / T [n, 1], the sum of exp(z / T - max) [n, 1] and the model's rest mass p_R
// [n, 1]: the dense coefficient [n, 1] on softmax(z / T) and the sparse [n, K] part on S,
// both times scale. fp64 ([n, K] only).
struct BucketGrad {
  at::Tensor coef, cols;
};
BucketGrad bucket_rows(const ChunkConstraint& k, const at::Tensor& max, const at::Tensor& sum,
                       const at::Tensor& p_rest, double T, double scale, Sums& sums) {
  // log p = z / T - max - log(sum) (max of z / T): no rounding at the scale of the
  // logsumexp itself, which zero-at-reference would feel on the largest p_j.
  const at::Tensor log_p = k.zS.to(at::kDouble) / T - max.to(at::kDouble) - sum.to(at::kDouble).log();
  const at::Tensor a_rest_f = k.a_rest.clamp_min(kRestFloor);
  const at::Tensor p_rest_f = p_rest.to(at::kDouble).clamp_min(kRestFloor);
  const at::Tensor rest_term = k.a_rest * (a_rest_f.log() - p_rest_f.log());  // [n, 1]
  const at::Tensor rows_kl = (at::xlogy(k.a, k.a) - k.a * log_p).sum(1, /*keepdim=*/true) + rest_term;
  sums.con.add_(rows_kl.sum() * (T * T));
  const at::Tensor a_S = k.a.sum(1, /*keepdim=*/true);
  sums.mass.add_((at::xlogy(a_S, a_S) - a_S * log_p.logsumexp(1, /*keepdim=*/true) + rest_term).sum());
  const at::Tensor c = 1 - a_rest_f / p_rest_f;  // [n, 1]
  BucketGrad g;
  g.coef = (c * (scale * T)).to(at::kFloat);
  g.cols = ((log_p.exp() * (1 - c) - k.a) * (scale * T)).to(at::kFloat);
  return g;
}

// The reference's |S|+1 probabilities, mixed by the gate when the post-only context is;
// at T != 1 also the whole term from the logits (see the top).
void prepare(const Plan& p, const ObjectiveSpec& s, const ConstraintInputs& c, const at::Tensor& z,
             ChunkConstraint& k, Sums& sums) {
  const bool full = s.options.reference_mix == ReferenceMix::full;
  auto ref_rows = [&](const at::Tensor& x) { return x.index_select(0, k.rows.idx.to(x.device())).to(z.device()); };
  at::Tensor gate;
  if (!full) {
    gate = gate_values(k.zS, ref_rows(c.z_post).to(at::kFloat), p.tt.index_select(0, k.rows.idx), s.options);
    sums.gate.add_(gate.sum().to(at::kDouble));
  }
  const BucketReference ref = bucket_reference(ref_rows(c.z_full), ref_rows(c.lse_full),
                                               full ? at::Tensor() : ref_rows(c.z_post),
                                               full ? at::Tensor() : ref_rows(c.lse_post), gate, p.T);
  k.a = ref.a;
  k.a_rest = ref.a_rest.unsqueeze(1);
  if (p.T != 1) {
    const at::Tensor pT = k.rows.of(z).to(at::kFloat).div(p.T);  // a new [n, V] buffer
    const RowExp e = exp_rows_(pT, p.S);
    const BucketGrad g = bucket_rows(k, e.max, e.sum, e.rest / e.sum, p.T, p.grad_scale, sums);
    k.g_rows = pT.mul_(g.coef / e.sum);  // T c softmax(z / T)
    k.g_cols = g.cols;
  }
}

bool wants_rest(const Plan& p) { return p.T == 1; }

at::Tensor torch_terms(const Plan& p, const ChunkConstraint& k, const RowExp& e, at::Tensor& coef, Sums& sums) {
  if (p.T != 1) return k.g_cols;  // made in step 1
  const BucketGrad g =
      bucket_rows(k, k.rows.of(e.max), k.rows.of(e.sum), k.rows.of(e.rest / e.sum), p.T, p.grad_scale, sums);
  coef.index_add_(0, k.rows.local, g.coef);
  return g.cols;
}

// T = 1: the kernel's order, as the anchor's: CE's logsumexp first, then the K-column
// pass, whose dense part CE's gradient kernel folds in.
void dispatch_terms(const Plan& p, const ChunkConstraint& k, const at::Tensor& z, const at::Tensor& tgt,
                    int64_t ignore_index, cuda::SubsetTermResult& con, at::Tensor& lse, Sums& sums) {
  const int64_t C = z.size(0);
  if (p.T != 1) {
    con.grad = all_rows(k, C, k.g_cols);
    return;
  }
  lse = cuda::cross_entropy_rows_(z, tgt, p.ce_scale, ignore_index, {}, {}, /*write_grad=*/false).lse;
  const cuda::SafetyMassRowsResult b =
      cuda::safety_mass_rows(z, p.S, lse, all_rows(k, C, k.a), all_rows(k, C, k.a_rest).squeeze(1),
                             chunk_mask(k, C, z), kRestFloor, p.grad_scale);
  con.grad = b.grad;
  con.row_coef = b.row_coef;
  sums.con.add_(b.losses.sum().to(at::kDouble));
  sums.mass.add_(b.mass_terms.sum().to(at::kDouble));
}

void unfused(const UnfusedArgs& a, ObjectiveValues& v) {
  const auto dev = a.hidden.device();
  const ConstraintInputs& c = a.in;
  auto on = [&](const at::Tensor& x) { return x.defined() ? x.to(dev) : x; };
  const SafetyMassResult r = safety_mass_loss(a.logits.index_select(0, a.rows), a.spec.S.to(dev), on(c.z_full),
                                              on(c.lse_full), on(c.z_post), on(c.lse_post), on(c.t), a.valid,
                                              a.spec.options);
  v.constraint = r.loss;
  v.gate_mean = r.gate_mean;
  v.terms = {r.gate_mean, r.mass_term, r.shape_term};
}

// gate, mass_term, shape_term (the descriptor's order): the shape term is the rest of L / T^2.
std::vector<at::Tensor> terms(const Plan& p, const Sums& sums) {
  const at::Tensor mass = sums.mass * p.con_scale;
  const at::Tensor shape = sums.con * (p.con_scale / (p.T * p.T)) - mass;
  return {gate_mean(p, sums), mass.to(at::kFloat), shape.to(at::kFloat)};
}

}  // namespace

const ConstraintRowOps& safety_mass_row_ops() {
  static const ConstraintRowOps ops = [] {
    ConstraintRowOps o;
    o.check = check;
    o.unfused_full_logits = true;
    o.prepare = prepare;
    o.wants_rest = wants_rest;
    o.torch_terms = torch_terms;
    o.dispatch_terms = dispatch_terms;
    o.unfused = unfused;
    o.terms = terms;
    return o;
  }();
  return ops;
}

}  // namespace safetune::loss::rows
