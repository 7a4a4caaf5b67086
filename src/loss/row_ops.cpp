// The shared parts of the constraints' row operations, and the table of tables.
#include "row_ops.h"

#include <stdexcept>
#include <string>

namespace safetune::loss::rows {

const ConstraintRowOps& row_ops_of(ConstraintKind kind) {
  switch (kind) {  // no default: a kind without a table is a compiler warning (-Wswitch)
    case ConstraintKind::none: return none_row_ops();
    case ConstraintKind::pact: return pact_row_ops();
    case ConstraintKind::kl_full: return kl_full_row_ops();
    case ConstraintKind::anchor: return anchor_row_ops();
    case ConstraintKind::safety_mass: return safety_mass_row_ops();
  }
  throw std::invalid_argument("fused_objective: no row operations for constraint kind " +
                              std::to_string(static_cast<int>(kind)));
}

at::Tensor capped(const at::Tensor& z, double cap) { return cap > 0 ? at::tanh(z / cap) * cap : z; }

at::Tensor reference_rows(const ConstraintInputs& c, const at::Tensor& ci, double cap) {
  if (c.ref_hidden.defined())
    return capped(at::mm(c.ref_hidden.index_select(0, ci.to(c.ref_hidden.device())), c.ref_weight.t()).to(at::kFloat),
                  cap);
  return c.ref_logits.index_select(0, ci.to(c.ref_logits.device())).to(at::kFloat);
}

RowExp exp_rows_(const at::Tensor& x, const at::Tensor& rest_of) {
  const at::Tensor m = x.amax(1, /*keepdim=*/true);
  x.sub_(m).exp_();
  RowExp r;
  if (rest_of.defined()) {
    const at::Tensor on_S = x.index_select(1, rest_of);
    x.index_fill_(1, rest_of, 0.0);
    r.rest = x.sum(1, /*keepdim=*/true);
    x.index_copy_(1, rest_of, on_S);
    r.sum = r.rest + on_S.sum(1, /*keepdim=*/true);
  } else {
    r.sum = x.sum(1, /*keepdim=*/true);
  }
  r.max = m;
  r.lse = r.sum.log().add_(m);
  return r;
}

at::Tensor chunk_mask(const ChunkConstraint& k, int64_t C, const at::Tensor& like) {
  return at::zeros({C}, like.options().dtype(at::kBool)).index_fill_(0, k.rows.local, true);
}

at::Tensor all_rows(const ChunkConstraint& k, int64_t C, const at::Tensor& x) {
  std::vector<int64_t> shape = x.sizes().vec();
  shape[0] = C;
  return at::zeros(shape, x.options().dtype(at::kFloat)).index_copy_(0, k.rows.local, x.to(at::kFloat));
}

at::Tensor gate_mean(const Plan& p, const Sums& sums) {
  return (p.n_con > 0 ? sums.gate / double(p.n_con) : sums.gate).to(at::kFloat);
}

void no_dispatch_terms(const Plan&, const ChunkConstraint&, const at::Tensor&, const at::Tensor&, int64_t,
                       cuda::SubsetTermResult&, at::Tensor&, Sums&) {}
bool no_rest(const Plan&) { return false; }
std::vector<at::Tensor> no_terms(const Plan&, const Sums&) { return {}; }

at::Tensor logits_on_S(const UnfusedArgs& a) {
  const at::Tensor WS = a.weight.index_select(0, a.spec.S.to(a.hidden.device(), at::kLong));
  return capped(at::matmul(a.hidden.index_select(0, a.rows), WS.t()), a.spec.logit_softcap);
}

void check_whole_vocab_reference(const ConstraintInputs& c, int64_t M, int64_t V, const char* kind) {
  if (c.ref_hidden.defined()) {
    TORCH_CHECK(c.ref_hidden.dim() == 2 && c.ref_hidden.size(0) == M && c.ref_weight.dim() == 2 &&
                    c.ref_weight.size(0) == V && c.ref_weight.size(1) == c.ref_hidden.size(1),
                "fused_objective: expected ref_hidden [M, d] and ref_weight [V, d]");
  } else {
    TORCH_CHECK(c.ref_logits.defined() && c.ref_logits.dim() == 2 && c.ref_logits.size(0) == M &&
                    c.ref_logits.size(1) == V,
                "fused_objective: ", kind, " needs ref_hidden + ref_weight or ref_logits [M, V]");
  }
}

at::Tensor unfused_reference_logits(const UnfusedArgs& a) {
  at::NoGradGuard no_grad;
  const ConstraintInputs& c = a.in;
  return c.ref_hidden.defined()
             ? capped(at::matmul(c.ref_hidden, c.ref_weight.t()).to(at::kFloat), a.spec.logit_softcap)
             : c.ref_logits.to(a.hidden.device(), at::kFloat);
}

// none: no constraint; every operation adds nothing.
const ConstraintRowOps& none_row_ops() {
  static const ConstraintRowOps ops = [] {
    ConstraintRowOps o;
    o.check = [](const ObjectiveSpec&, const ConstraintInputs&, int64_t, int64_t) {};
    o.prepare = [](const Plan&, const ObjectiveSpec&, const ConstraintInputs&, const at::Tensor&, ChunkConstraint&,
                   Sums&) {};
    o.wants_rest = no_rest;
    o.torch_terms = [](const Plan&, const ChunkConstraint&, const RowExp&, at::Tensor&, Sums&) { return at::Tensor(); };
    o.dispatch_terms = no_dispatch_terms;
    o.unfused = [](const UnfusedArgs&, ObjectiveValues&) {};
    o.terms = no_terms;
    return o;
  }();
  return ops;
}

}  // namespace safetune::loss::rows
