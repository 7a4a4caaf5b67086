// PACT step 1 (see safety_tokens.h): teacher-forced refusals through the aligned and the
// probe model, aggregated into the safety-token set S and its direction v.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "safetune/core/device.h"
#include "safetune/core/error.h"
#include "safetune/data/batch.h"
#include "safetune/data/records.h"
#include "safetune/model/load.h"
#include "safetune/safety/safety_tokens.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"

namespace safetune::safety {

// ---------------------------------------------------------------------------------------
// Aggregation

DirectionAccumulator::DirectionAccumulator(int64_t vocab_size, std::string mode, double temperature)
    : vocab_(vocab_size), mode_(std::move(mode)), temperature_(temperature) {
  if (mode_ != "p_diff" && mode_ != "pref_logratio")
    input_error("--mode", "expected p_diff or pref_logratio, got '" + mode_ + "'");
  if (!(temperature_ > 0) || !std::isfinite(temperature_))
    input_error("--temperature", "must be a positive number");
  sum_diff_ = at::zeros({vocab_}, at::kDouble);
  sum_prob_ = at::zeros({vocab_}, at::kDouble);
}

void DirectionAccumulator::add(const at::Tensor& logits_aligned, const at::Tensor& logits_probe) {
  TORCH_CHECK(logits_aligned.dim() == 2 && logits_aligned.sizes() == logits_probe.sizes() &&
                  logits_aligned.size(1) == vocab_ && logits_aligned.size(0) > 0,
              "DirectionAccumulator::add: expected two [R, V] logits with R > 0");
  // fp64 from here: the means are sums of many small probabilities.
  at::Tensor la = at::log_softmax(logits_aligned.to(at::kCPU, at::kDouble) / temperature_, -1);
  at::Tensor lb = at::log_softmax(logits_probe.to(at::kCPU, at::kDouble) / temperature_, -1);
  at::Tensor pa = la.exp();
  at::Tensor per_step = mode_ == "p_diff" ? pa - lb.exp() : pa * (lb - la);
  sum_diff_ += per_step.mean(0);
  sum_prob_ += pa.mean(0);
  ++examples_;
  positions_ += logits_aligned.size(0);
}

at::Tensor DirectionAccumulator::mean_diff() const { return sum_diff_ / double(std::max<int64_t>(examples_, 1)); }
at::Tensor DirectionAccumulator::mean_prob() const { return sum_prob_ / double(std::max<int64_t>(examples_, 1)); }

std::vector<SafetyToken> DirectionAccumulator::finish(int64_t topk) const {
  TORCH_CHECK(examples_ > 0, "DirectionAccumulator::finish: no examples");
  if (topk < 1) input_error("--topk", "must be at least 1");
  const int64_t k = std::min(topk, vocab_);
  at::Tensor d = mean_diff(), pbar = mean_prob();
  // S: the k most probable tokens under the aligned model, largest first.
  at::Tensor S = std::get<1>(pbar.topk(k, /*dim=*/0, /*largest=*/true, /*sorted=*/true));
  at::Tensor raw = d.index_select(0, S);
  // z-score the non-zero entries (those of S, unless a d_j is exactly 0). std is the
  // unbiased estimate, as torch.Tensor.std; with fewer than two entries it is taken as 0.
  at::Tensor z = raw.clone();
  at::Tensor nz = raw != 0;
  const int64_t n = nz.sum().item<int64_t>();
  if (n > 0) {
    at::Tensor vals = raw.masked_select(nz);
    double mean = vals.mean().item<double>();
    double sd = n >= 2 ? vals.std(/*unbiased=*/true).item<double>() : 0.0;
    z.masked_scatter_(nz, (vals - mean) / (sd + 1e-6));
  }
  at::Tensor v = z / (z.norm().item<double>() + 1e-6);

  std::vector<SafetyToken> out(k);
  auto Sa = S.accessor<int64_t, 1>();
  auto va = v.accessor<double, 1>();
  auto ra = raw.accessor<double, 1>();
  auto pa = pbar.accessor<double, 1>();
  for (int64_t i = 0; i < k; ++i) {
    out[i].id = Sa[i];
    out[i].weight = va[i];
    out[i].p_ref = pa[Sa[i]];
    out[i].diff = ra[i];
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Models, tokenizers, examples

namespace {

// One refusal, tokenised for both models: the prompts differ, the response ids are shared.
struct Pair {
  std::vector<int64_t> prompt_a, prompt_b, response;  // response: the first R ids
};

void check_same_vocabulary(const text::Tokenizer& a, const text::Tokenizer& b, const std::string& aligned_dir,
                           const std::string& probe_dir) {
  if (a.vocab_size() != b.vocab_size())
    input_error(probe_dir, "the probe's tokenizer has a vocabulary of " + std::to_string(b.vocab_size()) +
                               ", the aligned model's (" + aligned_dir + ") has " + std::to_string(a.vocab_size()) +
                               ": step 1 needs identical vocabularies");
  for (int64_t id = 0; id < a.vocab_size(); ++id) {
    std::string pa = a.id_to_piece(static_cast<int32_t>(id)), pb = b.id_to_piece(static_cast<int32_t>(id));
    if (pa != pb)
      input_error(probe_dir, "token " + std::to_string(id) + " is '" + escape_piece(pb) + "' in the probe but '" +
                                 escape_piece(pa) + "' in the aligned model: step 1 needs identical vocabularies");
  }
}

std::vector<int64_t> widen(const std::vector<int32_t>& v) { return std::vector<int64_t>(v.begin(), v.end()); }

// Right-padded batch of prompt + response[:R-1] and the flat positions whose logits
// predict the R response tokens.
at::Tensor response_logits(model::Transformer& m, const std::vector<const Pair*>& rows, bool aligned, int64_t pad,
                           std::vector<int64_t>* lengths_out) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t T = 0;
  for (const Pair* p : rows) {
    const auto& pr = aligned ? p->prompt_a : p->prompt_b;
    T = std::max<int64_t>(T, pr.size() + p->response.size() - 1);
  }
  std::vector<int64_t> ids(B * T, pad), mask(B * T, 0), gather;
  lengths_out->clear();
  for (int64_t b = 0; b < B; ++b) {
    const auto& pr = aligned ? rows[b]->prompt_a : rows[b]->prompt_b;
    const auto& rs = rows[b]->response;
    int64_t n = 0;
    for (int64_t id : pr) ids[b * T + n] = id, mask[b * T + n] = 1, ++n;
    for (size_t t = 0; t + 1 < rs.size(); ++t) ids[b * T + n] = rs[t], mask[b * T + n] = 1, ++n;
    // logits at position len(prompt) - 1 + t predict response token t.
    for (size_t t = 0; t < rs.size(); ++t) gather.push_back(b * T + static_cast<int64_t>(pr.size()) - 1 + t);
    lengths_out->push_back(static_cast<int64_t>(rs.size()));
  }
  const auto dev = m.device();
  at::Tensor input = at::tensor(ids, at::kLong).view({B, T}).to(dev);
  at::Tensor attn = at::tensor(mask, at::kLong).view({B, T}).to(dev);
  at::Tensor hidden = m.forward(input, attn);
  at::Tensor picked = hidden.reshape({B * T, -1}).index_select(0, at::tensor(gather, at::kLong).to(dev));
  return m.logits(picked).to(at::kCPU, at::kFloat);
}

// Each refusal example as the two models see it: the aligned model's chat prompt, the
// probe's plain one, and the shared response tokens (at most max_resp_len).
std::vector<Pair> tokenize_pairs(const std::vector<data::Record>& records, const text::Tokenizer& tok_a,
                                 const text::Tokenizer& tok_b, const text::ChatTemplate& tmpl_a,
                                 int64_t max_resp_len) {
  const text::ChatTemplate plain = text::ChatTemplate::by_name("plain");
  std::vector<Pair> pairs;
  pairs.reserve(records.size());
  for (const data::Record& r : records) {
    if (r.response.empty()) input_error(r.where, "empty output: a refusal example needs the refusal text");
    // The response is tokenised once (as plain text, no BOS); both tokenizers must agree.
    std::vector<int32_t> ya = tok_a.encode(r.response, false), yb = tok_b.encode(r.response, false);
    if (ya != yb)
      input_error(r.where, "the aligned and probe tokenizers split this response differently (" +
                               std::to_string(ya.size()) + " vs " + std::to_string(yb.size()) +
                               " tokens): step 1 needs identical tokenisations");
    if (ya.empty()) input_error(r.where, "the output encodes to no tokens");
    Pair p;
    std::string pa, pb;
    try {
      pa = tmpl_a.render(r.prompt, /*add_generation_prompt=*/true);
      pb = plain.render(r.prompt, /*add_generation_prompt=*/true);
    } catch (const InputError& e) {
      input_error(r.where, e.what());
    }
    // Chat templates write their own BOS text; the plain probe prompt gets the
    // tokenizer's BOS, as a base model's tokenizer adds by default (as data::tokenize_example).
    p.prompt_a = widen(tok_a.encode(pa, tmpl_a.family() == text::ChatTemplate::Family::kPlain));
    p.prompt_b = widen(tok_b.encode(pb, true));
    if (p.prompt_a.empty() || p.prompt_b.empty()) input_error(r.where, "the prompt encodes to no tokens");
    ya.resize(std::min<size_t>(ya.size(), static_cast<size_t>(max_resp_len)));
    p.response = widen(ya);
    pairs.push_back(std::move(p));
  }
  return pairs;
}

}  // namespace

SafetyTokens discover_safety_tokens(const std::string& aligned_dir, const std::string& probe_dir,
                                    const std::string& refusals_path, const DiscoverOptions& o,
                                    const std::function<void(int64_t, int64_t)>& progress) {
  if (o.topk < 1) input_error("--topk", "must be at least 1");
  if (o.max_resp_len < 1) input_error("--max-resp-len", "must be at least 1");
  if (o.limit < 0) input_error("--limit", "must be >= 0");
  if (o.batch_size < 1) input_error("--batch-size", "must be at least 1");
  if (o.mode != "p_diff" && o.mode != "pref_logratio")
    input_error("--mode", "expected p_diff or pref_logratio, got '" + o.mode + "'");
  if (!(o.temperature > 0) || !std::isfinite(o.temperature)) input_error("--temperature", "must be a positive number");
  const c10::Device device = resolve_device(o.device, "--device");  // a clear error when no GPU is there

  // Tokenizers first: a vocabulary mismatch is reported before any weights are read.
  auto tok_a = text::load_tokenizer(aligned_dir);
  auto tok_b = text::load_tokenizer(probe_dir);
  check_same_vocabulary(*tok_a, *tok_b, aligned_dir, probe_dir);
  const text::ChatTemplate tmpl_a = text::resolve_chat_template(o.chat_template, aligned_dir);

  std::vector<data::Record> records = data::read_records(refusals_path, o.columns);
  if (o.limit > 0 && static_cast<int64_t>(records.size()) > o.limit) records.resize(o.limit);

  const std::vector<Pair> pairs = tokenize_pairs(records, *tok_a, *tok_b, tmpl_a, o.max_resp_len);

  model::LoadedModel A = model::load_model(aligned_dir, device);
  model::LoadedModel B = model::load_model(probe_dir, device);
  const int64_t V = A.config.vocab_size;
  if (B.config.vocab_size != V)
    input_error(probe_dir + "/config.json", "vocab_size is " + std::to_string(B.config.vocab_size) +
                                                ", the aligned model's is " + std::to_string(V));
  if (tok_a->vocab_size() > V)
    input_error(aligned_dir, "the tokenizer has " + std::to_string(tok_a->vocab_size()) +
                                 " tokens but the model only " + std::to_string(V) + " logits");
  A.model->eval();
  B.model->eval();
  const int64_t pad_a = data::pad_id_for(*tok_a), pad_b = data::pad_id_for(*tok_b);

  DirectionAccumulator acc(V, o.mode, o.temperature);
  at::NoGradGuard no_grad;
  const int64_t total = static_cast<int64_t>(pairs.size());
  for (int64_t start = 0; start < total; start += o.batch_size) {
    std::vector<const Pair*> rows;
    for (int64_t i = start; i < std::min(total, start + o.batch_size); ++i) rows.push_back(&pairs[i]);
    std::vector<int64_t> lengths;
    at::Tensor la = response_logits(*A.model, rows, true, pad_a, &lengths);
    at::Tensor lb = response_logits(*B.model, rows, false, pad_b, &lengths);
    int64_t off = 0;
    for (int64_t n : lengths) {
      acc.add(la.narrow(0, off, n), lb.narrow(0, off, n));
      off += n;
    }
    if (progress) progress(start + static_cast<int64_t>(rows.size()), total);
  }

  SafetyTokens out;
  out.settings = o;
  out.aligned_path = aligned_dir;
  out.probe_path = probe_dir;
  out.aligned_hash = model_hash(aligned_dir);
  out.probe_hash = model_hash(probe_dir);
  out.vocab_size = V;
  out.num_examples = acc.examples();
  out.num_positions = acc.positions();
  out.tokens = acc.finish(o.topk);
  for (SafetyToken& t : out.tokens)
    t.piece = t.id < tok_a->vocab_size() ? tok_a->id_to_piece(static_cast<int32_t>(t.id)) : "";
  return out;
}

}  // namespace safetune::safety
