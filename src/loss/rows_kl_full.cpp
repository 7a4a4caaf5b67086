// kl_full's row operations (see row_ops.h): KL(reference || model) over the whole
// vocabulary at temperature T, from reference logit chunks made on the fly.
#include "row_ops.h"

namespace safetune::loss::rows {
namespace {

// Adds the rows' T^2 KL(r || p) to con_sum and returns its gradient for those rows times
// `scale`, T (p - r) scale as [n, V] fp32, where p = softmax(z / T) and r = softmax(zr / T).
// Two [n, V] buffers besides z: the reference's log r (later the scratch, then p and the
// gradient) and r. The KL is summed as sum r log r - sum r z / T + lse(z / T) sum r, so
// that log p is never stored.
at::Tensor kl_full_rows(const ConstraintInputs& c, const ChunkRows& rows, const at::Tensor& z, double T, double scale,
                        double cap, at::Tensor& con_sum) {
  const at::Tensor zrow = rows.of(z);  // any float dtype, read only
  at::Tensor log_r = reference_rows(c, rows.idx, cap).div_(T);
  const at::Tensor r = log_r.clone();
  const RowExp er = exp_rows_(r);
  r.div_(er.sum);
  log_r.sub_(er.lse);
  const at::Tensor r_log_r = log_r.mul_(r).sum(1, /*keepdim=*/true);
  const at::Tensor r_z = at::mul_out(log_r, r, zrow).sum(1, /*keepdim=*/true);
  const at::Tensor p = log_r.copy_(zrow).div_(T);
  const RowExp ep = exp_rows_(p);
  con_sum.add_(((r_log_r - r_z / T + ep.lse * r.sum(1, /*keepdim=*/true)) * (T * T)).sum().to(at::kDouble));
  return p.div_(ep.sum).sub_(r).mul_(scale * T);
}

}  // namespace

const ConstraintRowOps& kl_full_row_ops() {
  static const ConstraintRowOps ops = [] {
    ConstraintRowOps o;
    o.check = [](const ObjectiveSpec&, const ConstraintInputs& c, int64_t M, int64_t V) {
      check_whole_vocab_reference(c, M, V, "kl_full");
    };
    o.unfused_full_logits = true;
    // The whole term in step 1: its loss, and its gradient for the rows (added after step 2).
    o.prepare = [](const Plan& p, const ObjectiveSpec&, const ConstraintInputs& c, const at::Tensor& z,
                   ChunkConstraint& k, Sums& sums) {
      k.g_rows = kl_full_rows(c, k.rows, z, p.T, p.grad_scale, p.softcap, sums.con);
    };
    o.wants_rest = no_rest;
    o.torch_terms = [](const Plan&, const ChunkConstraint&, const RowExp&, at::Tensor&, Sums&) { return at::Tensor(); };
    o.dispatch_terms = no_dispatch_terms;
    o.unfused = [](const UnfusedArgs& a, ObjectiveValues& v) {
      v.constraint = kl_full_loss(a.logits.index_select(0, a.rows), unfused_reference_logits(a), a.valid,
                                  a.spec.options.temperature);
    };
    o.terms = no_terms;
    return o;
  }();
  return ops;
}

}  // namespace safetune::loss::rows
