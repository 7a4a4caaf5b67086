// The demo's view of the safety-token set (see safety_set.h).
#include "safetune/demo/safety_set.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>

#include "safetune/data/batch.h"
#include "safetune/data/example.h"
#include "safetune/data/records.h"
#include "safetune/loss/constraints.h"
#include "safetune/model/load.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"

namespace safetune::demo {

using json = nlohmann::json;

json safety_set_json(const safety::SafetyTokens& t, const std::vector<int64_t>& forced) {
  json tokens = json::array(), pieces = json::array();
  int positive = 0, negative = 0;
  for (const auto& s : t.tokens) {
    tokens.push_back({{"id", s.id}, {"piece", s.piece}, {"weight", s.weight}, {"p_ref", s.p_ref}, {"diff", s.diff}});
    pieces.push_back(s.piece);
    (s.weight > 0 ? positive : negative) += 1;
  }
  return {{"tokens", tokens}, {"pieces", pieces}, {"positive_v", positive}, {"negative_v", negative},
          {"forced", forced}};
}

int64_t force_token(safety::SafetyTokens& t, const text::Tokenizer& tok, const std::string& context,
                    const std::string& word) {
  const std::vector<int32_t> ids = tok.encode(context);
  int64_t id = -1;
  for (int32_t i : ids) {
    std::string piece = tok.id_to_piece(i);
    // SentencePiece marks a word start with U+2581.
    if (piece.rfind("\xE2\x96\x81", 0) == 0) piece = piece.substr(3);
    if (piece == word) id = i;
  }
  if (id < 0) throw std::runtime_error("stress world: '" + word + "' is not one token of '" + context + "'");
  for (const auto& s : t.tokens)
    if (s.id == id) return -1;
  safety::SafetyToken s;
  s.id = id;
  s.piece = tok.id_to_piece(static_cast<int32_t>(id));
  t.tokens.push_back(s);
  return id;
}

json reference_mass_on_s(const std::string& aligned_dir, const safety::SafetyTokens& t,
                         const std::map<std::string, std::string>& record_files, int64_t max_length,
                         int64_t max_examples) {
  torch::NoGradGuard no_grad;
  const model::LoadedModel ref = model::load_model(aligned_dir);
  auto tok = text::load_tokenizer(aligned_dir);
  const text::ChatTemplate tmpl = text::ChatTemplate::by_name("llama3");
  const at::Tensor S = t.ids();
  json out = json::object();
  for (const auto& [name, path] : record_files) {
    const std::vector<data::Record> all = data::read_records(path);
    std::vector<data::Record> records;
    const int64_t n = std::min<int64_t>(max_examples, static_cast<int64_t>(all.size()));
    for (int64_t i = 0; i < n; ++i) records.push_back(all[i * static_cast<int64_t>(all.size()) / n]);
    const auto examples = data::tokenize_records(records, *tok, tmpl, max_length);
    data::Batcher batcher(examples, 32, 0, /*shuffle=*/false, false, data::pad_id_for(*tok));
    double sum = 0;
    int64_t count = 0;
    for (int64_t b = 0; b < batcher.steps_per_epoch(); ++b) {
      const data::Batch batch = batcher.batch(0, b);
      const loss::ResponsePositions P = loss::response_positions(batch);
      const at::Tensor h = ref.model->forward(batch.input_ids, batch.attention_mask).index({P.rows, P.cols});
      const at::Tensor p = at::softmax(ref.model->logits(h).to(at::kFloat), -1);
      sum += p.index_select(1, S).sum().item<double>();
      count += P.rows.numel();
    }
    out[name] = {{"mean_mass_on_s", count ? sum / static_cast<double>(count) : 0.0}, {"positions", count}};
  }
  return out;
}

}  // namespace safetune::demo
