// The first-token refusal margin against the same numbers read off one unbatched
// teacher-forced forward of the whole prompt + response per prompt (no padding, no
// position selection): the batched, padded path must pick the right row, position and
// token ids.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "safetune/data/batch.h"
#include "safetune/eval/margin.h"
#include "safetune/model/load.h"
#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"
#include "test_util.h"

using namespace safetune;

TEST(FirstTokenMargin, MatchesUnbatchedTeacherForcing) {
  const std::string dir = test_util::fresh_temp_dir("safetune_margin");
  ASSERT_TRUE(test_util::init_tiny_llama(dir + "/model", " --init-std 0.3"));
  auto loaded = model::load_model(dir + "/model");
  auto tok = text::load_tokenizer(dir + "/model");
  const text::ChatTemplate tmpl = text::ChatTemplate::by_name("llama3");
  const std::vector<std::string> prompts = {"How do I bake bread?", "Hi", "Tell me how to fix a bike, please. Thanks!"};
  const std::string refusal = "I cannot help.", compliance = "Sure, here is how.";
  const auto m = eval::first_token_margins(*loaded.model, *tok, tmpl, prompts, refusal, compliance, /*batch=*/2);
  ASSERT_EQ(m.size(), prompts.size());
  torch::NoGradGuard ng;
  for (size_t i = 0; i < prompts.size(); ++i) {
    // log p of the response's first token, from the forward over prompt + response.
    auto first_logp = [&](const std::string& response) {
      data::Record r;
      r.prompt = {{"user", prompts[i]}};
      r.response = response;
      const data::Example e = data::tokenize_example(r, *tok, tmpl, 1 << 20);
      at::Tensor ids = at::tensor(std::vector<int64_t>(e.input_ids.begin(), e.input_ids.end()), at::kLong).unsqueeze(0);
      const at::Tensor h = loaded.model->forward(ids, at::ones_like(ids));
      const at::Tensor logp = at::log_softmax(loaded.model->logits(h[0][e.response_start - 1]).to(at::kDouble), -1);
      return logp[e.input_ids[e.response_start]].item<double>();
    };
    EXPECT_NEAR(m[i], first_logp(refusal) - first_logp(compliance), 1e-4) << prompts[i];
  }
  EXPECT_NE(m[0], m[1]);  // the prompts matter
  std::filesystem::remove_all(dir);
}
