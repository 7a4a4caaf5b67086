// Objective: cross-entropy on the response tokens, plus lambda x a safety constraint
// against a frozen reference (reference.h). objective.fused (default) computes both in one
// chunked pass over the hidden states; otherwise they are composed of separate ops.
#include "safetune/train/objective.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "safetune/data/batch.h"
#include "safetune/loss/constraints.h"
#include "safetune/loss/cross_entropy.h"
#include "safetune/model/transformer.h"
#include "safetune/safety/safety_tokens.h"

namespace safetune::train {

loss::ConstraintOptions constraint_options(const ObjectiveConfig& cfg) {
  loss::ConstraintOptions o;
  o.temperature = cfg.temperature;
  // gate.enabled = false means the full-context reference alone, whatever reference_mix says.
  o.reference_mix = cfg.gate.enabled ? cfg.reference_mix : loss::ReferenceMix::full;
  o.gate = cfg.gate;  // the gate's settings, less `enabled`
  o.positions = cfg.positions;
  o.first_n = cfg.first_n;
  o.probe_tau = cfg.probe_tau;
  return o;
}

Objective setup_objective(const RunConfig& cfg, model::Transformer& policy, const text::Tokenizer* tokenizer) {
  const ObjectiveConfig& oc = cfg.objective;
  Objective obj;
  obj.fused = oc.fused;
  obj.spec.kind = oc.constraint;
  obj.spec.lambda = oc.lambda;
  obj.spec.options = constraint_options(oc);
  obj.spec.logit_softcap = policy.final_logit_softcap();
  if (oc.constraint == loss::ConstraintKind::none) return obj;
  // The config made sure that every constraint needing S (its descriptor's needs_tokens)
  // has objective.tokens.
  if (!oc.tokens.empty()) {
    safety::SafetyTokens t = safety::read_safety_tokens(oc.tokens);
    safety::validate_safety_tokens(t, oc.tokens, policy.config().vocab_size, tokenizer, cfg.model.path);
    obj.spec.S = t.ids();
    obj.spec.w = t.weights();
    // target = reference: q is the reference's own distribution on S (every weight 1).
    // Constraints without token weights (safety_mass: v only selects S) get ones too.
    if (oc.target == Target::reference || !loss::descriptor_of(oc.constraint).uses_token_weights)
      obj.spec.w = at::ones_like(obj.spec.w);
  } else {
    obj.spec.S = at::empty({0}, at::kLong);
    obj.spec.w = at::empty({0}, at::kFloat);
  }
  obj.request = reference_request(oc, obj.spec.options);
  obj.reference = make_reference(cfg, policy, obj.spec.S);
  return obj;
}

at::Tensor shift_labels(const at::Tensor& labels) {
  // HF convention: labels are aligned with input_ids and the loss shifts them. Shifting the
  // labels (rather than slicing the hidden states) keeps the hidden states contiguous.
  const int64_t T = labels.size(1);
  at::Tensor out = at::full_like(labels, loss::kIgnoreIndex);
  if (T > 1) out.narrow(1, 0, T - 1).copy_(labels.narrow(1, 1, T - 1));
  return out;
}

int64_t trained_tokens(const data::Batch& batch) {
  const int64_t T = batch.labels.size(1);
  if (T < 2) return 0;
  return batch.labels.narrow(1, 1, T - 1).ne(loss::kIgnoreIndex).sum().item<int64_t>();
}

LossTerms compute_objective(const Objective& objective, model::Transformer& model, const data::Batch& batch) {
  const loss::ObjectiveSpec& spec = objective.spec;
  const bool constrained = spec.kind != loss::ConstraintKind::none;
  // The reference first: it runs without gradients (and, for adapter_off, on the same
  // module with its adapters off), so nothing of it is alive during the policy's backward.
  loss::ResponsePositions P;
  ReferenceLogits ref;
  if (constrained) {
    P = loss::response_positions(batch);
    ref = objective.reference->compute(batch, P, objective.request);
  }
  at::Tensor hidden = model.forward(batch.input_ids, batch.attention_mask);  // [B,T,d]
  const int64_t T = hidden.size(1);
  at::Tensor h = hidden.reshape({-1, hidden.size(-1)});
  at::Tensor t = shift_labels(batch.labels).reshape({-1});
  // The constraint applies at the response positions P, as rows of h. kl_full and anchor
  // take the reference's hidden states and lm_head weight (fused) or its logits.
  loss::ConstraintInputs in;
  at::Tensor flat_p;
  if (constrained) {
    flat_p = P.rows.mul(T).add(P.cols).to(at::kCPU, at::kLong);
    const at::Tensor valid =
        loss::select_positions(spec.options, P.t, at::ones({P.t.numel()}, at::kBool), ref.mass, P.rows);
    in.rows = flat_p;
    in.valid = valid;
    in.t = P.t;
    in.z_full = ref.z_full;  // the reference on S
    in.z_post = ref.z_post;
    in.lse_full = ref.lse_full;  // its log-sum-exps (safety_mass)
    in.lse_post = ref.lse_post;
    in.ref_hidden = ref.hidden;  // or over the whole vocabulary
    in.ref_weight = ref.weight;
    in.ref_logits = ref.logits;
  }
  loss::ObjectiveValues v;
  if (objective.fused) {
    // Only the rows that count go through the op: the trained positions (CE) and the
    // response positions (the constraint), usually the same set. Prompt and padding rows
    // would cost a [rows x vocab] GEMM forward and two backward for nothing.
    at::Tensor keep = t.to(at::kCPU).ne(loss::kIgnoreIndex);
    if (constrained) keep.index_fill_(0, flat_p, true);
    const at::Tensor kept = keep.nonzero().squeeze(1);  // increasing
    if (kept.numel() < t.numel()) {
      h = h.index_select(0, kept.to(h.device()));
      t = t.index_select(0, kept.to(t.device()));
      // Each response position's row among the kept ones: its rank.
      if (constrained) in.rows = keep.to(at::kLong).cumsum(0).sub_(1).index_select(0, flat_p);
    }
    v = loss::fused_objective(h, model.lm_head_weight(), t, spec, in);
  } else {
    // The plain composition over every position, with the plain row mapping: what the
    // fused path (and its row selection) is checked against.
    v = loss::unfused_objective(h, model.lm_head_weight(), t, spec, in);
  }
  LossTerms out;
  out.total = v.total;
  out.terms.emplace_back("ce", v.ce);
  if (!constrained) return out;
  out.terms.emplace_back(loss::name_of(spec.kind), v.constraint);
  // The constraint's own terms, named by its descriptor (pact: gate; safety_mass: gate,
  // mass_term, shape_term).
  const std::vector<std::string>& names = loss::descriptor_of(spec.kind).metric_terms;
  for (size_t i = 0; i < names.size() && i < v.terms.size(); ++i) out.terms.emplace_back(names[i], v.terms[i]);
  return out;
}

}  // namespace safetune::train
