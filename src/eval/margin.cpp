// First-token refusal margins (see margin.h).
#include "safetune/eval/margin.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>

#include "safetune/core/error.h"
#include "safetune/data/batch.h"
#include "safetune/model/transformer.h"

namespace safetune::eval {

std::vector<double> first_token_margins(model::Transformer& model, const text::Tokenizer& tok,
                                        const text::ChatTemplate& tmpl, const std::vector<std::string>& prompts,
                                        const std::string& refusal, const std::string& compliance,
                                        int64_t batch_size, const std::function<bool(int64_t batch)>& owns) {
  torch::NoGradGuard no_grad;
  const int64_t max_length = 1 << 20;
  // The prompt's ids and each response's first id, exactly as training tokenizes them.
  auto example = [&](const std::string& prompt, const std::string& response) {
    data::Record r;
    r.prompt = {{"user", prompt}};
    r.response = response;
    r.where = "margin prompt";
    return data::tokenize_example(r, tok, tmpl, max_length);
  };
  std::vector<std::vector<int32_t>> ids;
  std::vector<int64_t> refuse_id, comply_id;
  for (const std::string& p : prompts) {
    const data::Example a = example(p, refusal), b = example(p, compliance);
    ids.emplace_back(a.input_ids.begin(), a.input_ids.begin() + a.response_start);
    refuse_id.push_back(a.input_ids[a.response_start]);
    comply_id.push_back(b.input_ids[b.response_start]);
  }
  std::vector<double> out(prompts.size(), std::numeric_limits<double>::quiet_NaN());
  const c10::Device dev = model.device();
  for (size_t start = 0; start < prompts.size(); start += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(prompts.size(), start + static_cast<size_t>(batch_size));
    if (owns && !owns(static_cast<int64_t>(start) / batch_size)) continue;
    size_t longest = 0;
    for (size_t i = start; i < end; ++i) longest = std::max(longest, ids[i].size());
    // Right padded: under the causal mask a row's last prompt position never sees padding.
    // Filled as plain vectors: indexing a tensor element by element costs a dispatch each.
    const int64_t rows_n = static_cast<int64_t>(end - start), cols = static_cast<int64_t>(longest);
    std::vector<int64_t> input_v(rows_n * cols, 0), mask_v(rows_n * cols, 0), last;
    for (size_t i = start; i < end; ++i) {
      const int64_t row = static_cast<int64_t>(i - start), n = static_cast<int64_t>(ids[i].size());
      for (int64_t j = 0; j < n; ++j) {
        input_v[row * cols + j] = ids[i][j];
        mask_v[row * cols + j] = 1;
      }
      last.push_back(n - 1);
    }
    const at::Tensor input = at::tensor(input_v, at::kLong).view({rows_n, cols});
    const at::Tensor mask = at::tensor(mask_v, at::kLong).view({rows_n, cols});
    const at::Tensor hidden = model.forward(input.to(dev), mask.to(dev));
    const at::Tensor rows = at::arange(static_cast<int64_t>(end - start), at::kLong).to(dev);
    const at::Tensor h = hidden.index({rows, at::tensor(last, at::kLong).to(dev)});
    const at::Tensor logp = at::log_softmax(model.logits(h).to(at::kDouble), -1).to(at::kCPU).contiguous();
    const double* lp = logp.data_ptr<double>();
    const int64_t vocab = logp.size(1);
    for (size_t i = start; i < end; ++i) {
      const int64_t row = static_cast<int64_t>(i - start);
      out[i] = lp[row * vocab + refuse_id[i]] - lp[row * vocab + comply_id[i]];
    }
  }
  return out;
}

}  // namespace safetune::eval
