// anchor's row operations (see row_ops.h): squared differences of the safety tokens'
// log-probabilities under the whole-vocabulary softmax (temperature 1).
#include "row_ops.h"

namespace safetune::loss::rows {
namespace {

// The reference's log-probabilities on S, from its chunk rows.
void prepare(const Plan& p, const ObjectiveSpec&, const ConstraintInputs& c, const at::Tensor&, ChunkConstraint& k,
             Sums&) {
  const at::Tensor zr = reference_rows(c, k.rows.idx, p.softcap);  // scratch for its exponentials
  const at::Tensor zr_S = zr.index_select(1, p.S);
  k.lr_S = zr_S - exp_rows_(zr).lse;
}

// With a = 2 lambda (lp_S - lr_S) / (n K): + a on the columns S and - sum(a) softmax(z)
// on the whole row (a coefficient on CE's softmax).
at::Tensor torch_terms(const Plan& p, const ChunkConstraint& k, const RowExp& e, at::Tensor& coef, Sums& sums) {
  const at::Tensor diff = k.zS - k.rows.of(e.lse) - k.lr_S;  // lp_S - lr_S
  sums.con.add_(diff.pow(2).sum().to(at::kDouble));
  const at::Tensor g_cols = diff * (2.0 * p.grad_scale);
  coef.index_add_(0, k.rows.local, -g_cols.sum(1, /*keepdim=*/true));
  return g_cols;
}

void dispatch_terms(const Plan& p, const ChunkConstraint& k, const at::Tensor& z, const at::Tensor& tgt,
                    int64_t ignore_index, cuda::SubsetTermResult& con, at::Tensor& lse, Sums& sums) {
  const int64_t C = z.size(0);
  lse = cuda::cross_entropy_rows_(z, tgt, p.ce_scale, ignore_index, {}, {}, /*write_grad=*/false).lse;
  con = cuda::anchor_rows(z, p.S, lse, all_rows(k, C, k.lr_S), chunk_mask(k, C, z), p.grad_scale);
  sums.con.add_(con.losses.sum().to(at::kDouble));
}

}  // namespace

const ConstraintRowOps& anchor_row_ops() {
  static const ConstraintRowOps ops = [] {
    ConstraintRowOps o;
    o.check = [](const ObjectiveSpec&, const ConstraintInputs& c, int64_t M, int64_t V) {
      check_whole_vocab_reference(c, M, V, "anchor");
    };
    o.mean_over_columns = true;
    o.unfused_full_logits = true;
    o.prepare = prepare;
    o.wants_rest = no_rest;
    o.torch_terms = torch_terms;
    o.dispatch_terms = dispatch_terms;
    o.unfused = [](const UnfusedArgs& a, ObjectiveValues& v) {
      v.constraint = anchor_loss(a.logits.index_select(0, a.rows), unfused_reference_logits(a),
                                 a.spec.S.to(a.hidden.device()), a.valid);
    };
    o.terms = no_terms;
    return o;
  }();
  return ops;
}

}  // namespace safetune::loss::rows
