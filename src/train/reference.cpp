// The constraint's frozen reference: copy, adapter_off, cache (see reference.h).
#include "safetune/train/reference.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <stdexcept>

#include "safetune/core/error.h"
#include "safetune/data/batch.h"
#include "safetune/loss/fused_objective.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"
#include "safetune/model/transformer.h"
#include "safetune/train/ref_cache.h"

namespace safetune::train {

namespace {

// Puts a module in eval mode for a scope and restores its training flag afterwards (also
// when the pass throws).
struct EvalScope {
  model::Transformer& m;
  bool was_training;
  explicit EvalScope(model::Transformer& model) : m(model), was_training(model.is_training()) { m.eval(); }
  ~EvalScope() {
    if (was_training) m.train();
  }
};

// Rows of hidden [B, T, d] at (rows[i], cols[i]) -> [N, d].
at::Tensor gather_rows(const at::Tensor& hidden, const at::Tensor& rows, const at::Tensor& cols) {
  const int64_t T = hidden.size(1);
  at::Tensor flat = rows.mul(T).add_(cols).to(hidden.device());
  return hidden.reshape({-1, hidden.size(-1)}).index_select(0, flat);
}

// Each row's log-sum-exp over the whole vocabulary of logits / T (fp64), from hidden
// rows [n, d], in row chunks: the [n, V] logits never exist at once.
at::Tensor logsumexp_rows(model::Transformer& m, const at::Tensor& hr, double T) {
  // fp64 for a_R = 1 - exp(lse_S - lse), which keeps its digits only when lse has them;
  // half the rows per chunk for the doubled width.
  const int64_t n = hr.size(0), chunk = std::max<int64_t>(1, loss::default_chunk_tokens(m.config().vocab_size) / 2);
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < n; s += chunk)
    parts.push_back(m.logits(hr.slice(0, s, std::min(n, s + chunk))).to(at::kDouble).div_(T).logsumexp(1));
  return parts.empty() ? at::zeros({0}, hr.options().dtype(at::kDouble)) : at::cat(parts);
}

}  // namespace

ReferenceLogits reference_pass(model::Transformer& m, const data::Batch& batch, const loss::ResponsePositions& P,
                               const at::Tensor& S, const ReferenceRequest& req) {
  at::NoGradGuard no_grad;
  EvalScope eval(m);
  ReferenceLogits out;
  // Only the |S| rows of the lm_head: the reference never forms full-vocabulary logits
  // unless the constraint needs them.
  const at::Tensor WS = m.lm_head_weight().index_select(0, S.to(m.device()));
  {
    at::Tensor h = m.forward(batch.input_ids, batch.attention_mask);
    at::Tensor hr = gather_rows(h, P.rows, P.cols);
    h = at::Tensor();
    out.z_full = m.softcap_logits(at::matmul(hr, WS.t())).to(at::kFloat);
    if (req.full_vocab) {
      at::Tensor logits = m.logits(hr).to(at::kFloat);
      if (req.mass) out.mass = loss::mass_on_subset(logits, S);
      out.logits = logits;
    } else if (req.mass) {
      // Row chunks: the mass needs each row's logsumexp, not [N, V] logits at once.
      const int64_t n = hr.size(0), chunk = loss::default_chunk_tokens(m.config().vocab_size);
      std::vector<at::Tensor> parts;
      for (int64_t s = 0; s < n; s += chunk)
        parts.push_back(loss::mass_on_subset(m.logits(hr.slice(0, s, std::min(n, s + chunk))), S));
      out.mass = parts.empty() ? at::zeros({0}, hr.options().dtype(at::kFloat)) : at::cat(parts);
    }
    if (req.lse) out.lse_full = logsumexp_rows(m, hr, req.lse_temperature);
    if (req.hidden) {
      out.hidden = hr;
      out.weight = m.lm_head_weight().detach();
    }
  }
  if (req.post) {
    at::Tensor h = m.forward(batch.post_ids, batch.post_attention_mask);
    const at::Tensor hp = gather_rows(h, P.rows, P.post_cols);
    h = at::Tensor();
    out.z_post = m.softcap_logits(at::matmul(hp, WS.t())).to(at::kFloat);
    if (req.lse) out.lse_post = logsumexp_rows(m, hp, req.lse_temperature);
  }
  return out;
}

namespace {

// A second frozen model from the same directory.
class CopyReference : public Reference {
 public:
  CopyReference(const RunConfig& cfg, const model::Transformer& policy, at::Tensor S) : S_(std::move(S)) {
    loaded_ = model::load_model(cfg.model.path, policy.device(), policy.dtype());
    for (auto& p : loaded_.model->parameters()) p.set_requires_grad(false);
    loaded_.model->eval();
  }
  ReferenceLogits compute(const data::Batch& b, const loss::ResponsePositions& P, const ReferenceRequest& r) override {
    return reference_pass(*loaded_.model, b, P, S_, r);
  }
  std::string name() const override { return "copy"; }

 private:
  model::LoadedModel loaded_;
  at::Tensor S_;
};

// The policy with its adapters switched off: the base model's function, no second copy.
class AdapterOffReference : public Reference {
 public:
  AdapterOffReference(model::Transformer& policy, at::Tensor S) : m_(policy), S_(std::move(S)) {}
  ReferenceLogits compute(const data::Batch& b, const loss::ResponsePositions& P, const ReferenceRequest& r) override {
    struct Off {
      model::Transformer& m;
      explicit Off(model::Transformer& x) : m(x) { model::set_lora_enabled(m, false); }
      ~Off() { model::set_lora_enabled(m, true); }
    } off(m_);
    return reference_pass(m_, b, P, S_, r);
  }
  std::string name() const override { return "adapter_off"; }

 private:
  model::Transformer& m_;
  at::Tensor S_;
};

class MemoryReference : public Reference {
 public:
  MemoryReference(at::Tensor offsets, at::Tensor z_full, at::Tensor z_post, at::Tensor mass, std::string where,
                  at::Tensor lse_full, at::Tensor lse_post)
      : offsets_(offsets.to(at::kLong).contiguous()), z_full_(std::move(z_full)), z_post_(std::move(z_post)),
        mass_(std::move(mass)), lse_full_(std::move(lse_full)), lse_post_(std::move(lse_post)),
        where_(std::move(where)) {}
  ReferenceLogits compute(const data::Batch& b, const loss::ResponsePositions& P, const ReferenceRequest& r) override {
    // The config refuses a cache for the constraints that need the whole vocabulary.
    TORCH_CHECK(!r.full_vocab && !r.hidden, "the reference cache holds safety-token logits only");
    // The batch's rows are its examples in order, each with its response positions in
    // order: the same layout as the cache's blocks.
    const int64_t* off = offsets_.data_ptr<int64_t>();
    const int64_t E = offsets_.numel() - 1;
    const at::Tensor rs = b.response_start.to(at::kCPU, at::kLong), len = b.lengths.to(at::kCPU, at::kLong);
    std::vector<int64_t> idx;
    idx.reserve(P.t.numel());
    for (size_t row = 0; row < b.indices.size(); ++row) {
      const int64_t e = b.indices[row];
      const int64_t n = len[row].item<int64_t>() - rs[row].item<int64_t>();
      if (e < 0 || e >= E || off[e + 1] - off[e] != n)
        input_error(where_, "example " + std::to_string(e) + " does not match the cache (" +
                                (e >= 0 && e < E ? std::to_string(off[e + 1] - off[e]) : std::string("no")) +
                                " cached response positions, the batch has " + std::to_string(n) + ")");
      for (int64_t k = 0; k < n; ++k) idx.push_back(off[e] + k);
    }
    const at::Tensor I = at::tensor(idx, at::kLong).to(z_full_.device());  // rows may live on a GPU (bench step)
    ReferenceLogits out;
    out.z_full = z_full_.index_select(0, I).to(at::kFloat);
    if (r.post) {
      if (!z_post_.defined()) input_error(where_, "the cache holds no post-only logits");
      out.z_post = z_post_.index_select(0, I).to(at::kFloat);
    }
    if (r.mass) out.mass = mass_.index_select(0, I).to(at::kFloat);
    if (r.lse) {
      // load_ref_cache refuses a cache without log-sum-exps for a constraint that needs them.
      if (!lse_full_.defined() || (r.post && !lse_post_.defined()))
        input_error(where_, "the cache holds no log-sum-exps; rebuild it with `safetune ref-cache`");
      out.lse_full = lse_full_.index_select(0, I).to(at::kDouble);
      if (r.post) out.lse_post = lse_post_.index_select(0, I).to(at::kDouble);
    }
    return out;
  }
  std::string name() const override { return "cache"; }

 private:
  at::Tensor offsets_, z_full_, z_post_, mass_, lse_full_, lse_post_;
  std::string where_;
};

}  // namespace

std::unique_ptr<Reference> memory_reference(at::Tensor offsets, at::Tensor z_full, at::Tensor z_post, at::Tensor mass,
                                            std::string where, at::Tensor lse_full, at::Tensor lse_post) {
  return std::make_unique<MemoryReference>(std::move(offsets), std::move(z_full), std::move(z_post), std::move(mass),
                                           std::move(where), std::move(lse_full), std::move(lse_post));
}

ReferenceRequest reference_request(const ObjectiveConfig& cfg, const loss::ConstraintOptions& o) {
  const loss::ConstraintDescriptor& d = loss::descriptor_of(cfg.constraint);
  ReferenceRequest r;
  r.post = d.mixes_post_context && o.reference_mix != loss::ReferenceMix::full;
  r.full_vocab = d.needs_whole_vocab && !cfg.fused;
  r.hidden = d.needs_whole_vocab && cfg.fused;
  r.mass = loss::needs_reference_mass(o.positions);
  r.lse = d.needs_reference_lse;
  r.lse_temperature = o.temperature;
  return r;
}

std::unique_ptr<Reference> make_reference(const RunConfig& cfg, model::Transformer& policy, const at::Tensor& S) {
  ReferenceKind kind = cfg.objective.reference;
  if (kind == ReferenceKind::by_lora) kind = cfg.lora.enabled ? ReferenceKind::adapter_off : ReferenceKind::copy;
  switch (kind) {
    case ReferenceKind::adapter_off: return std::make_unique<AdapterOffReference>(policy, S);
    case ReferenceKind::copy: return std::make_unique<CopyReference>(cfg, policy, S);
    case ReferenceKind::cache: return load_ref_cache(cfg, S);
    case ReferenceKind::by_lora: break;  // resolved above
  }
  throw std::logic_error("make_reference: objective.reference out of range");
}

}  // namespace safetune::train
