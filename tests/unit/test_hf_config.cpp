// config.json parsing for the three supported families, and its errors.
#include <gtest/gtest.h>

#include "safetune/core/error.h"
#include "safetune/io/hf_config.h"

using namespace safetune;

namespace {
std::string error_of(const std::string& json_text) {
  try {
    io::parse_hf_config(json_text, "config.json");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

// Llama-3.1-8B-Instruct's config.json (shape fields as published).
TEST(HfConfig, Llama31) {
  auto c = io::parse_hf_config(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 14336, "max_position_embeddings": 131072, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "vocab_size": 128256})", "config.json");
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
}

// Qwen2.5-7B-Instruct: q/k/v bias implied, sliding window present but switched off.
TEST(HfConfig, Qwen25) {
  auto c = io::parse_hf_config(R"({
    "architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643, "eos_token_id": 151645,
    "hidden_act": "silu", "hidden_size": 3584, "intermediate_size": 18944,
    "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen2",
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_sliding_window": false,
    "vocab_size": 152064})", "config.json");
  EXPECT_EQ(c.arch, "qwen2");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias());
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645}));

  auto s = io::parse_hf_config(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 4, "vocab_size": 300,
    "use_sliding_window": true, "sliding_window": 16, "max_window_layers": 2})", "config.json");
  ASSERT_TRUE(s.sliding_window.has_value());
  EXPECT_FALSE(s.layer_slides(1));
  EXPECT_TRUE(s.layer_slides(2));
}

// Mistral-7B-v0.1: sliding window 4096 on every layer.
TEST(HfConfig, Mistral) {
  auto c = io::parse_hf_config(R"({
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
    "torch_dtype": "bfloat16", "vocab_size": 32000})", "config.json");
  EXPECT_EQ(c.arch, "mistral");
  ASSERT_TRUE(c.sliding_window.has_value());
  EXPECT_EQ(*c.sliding_window, 4096);
  EXPECT_TRUE(c.layer_slides(0));
  EXPECT_EQ(c.bos_token_id.value(), 1);
}

TEST(HfConfig, RoundTripThroughJson) {
  auto c = io::parse_hf_config(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2,
    "num_hidden_layers": 2, "vocab_size": 300, "tie_word_embeddings": true,
    "rope_scaling": {"type": "linear", "factor": 2.0}, "eos_token_id": 2})", "config.json");
  auto d = io::parse_hf_config(io::hf_config_json(c), "again.json");
  EXPECT_EQ(d.arch, c.arch);
  EXPECT_EQ(d.num_key_value_heads, 2);
  EXPECT_TRUE(d.tie_word_embeddings);
  EXPECT_EQ(d.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(d.rope_scaling.factor, 2.0);
  EXPECT_EQ(d.eos_token_ids, c.eos_token_ids);
}

TEST(HfConfig, Errors) {
  const std::string base = R"("hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4,
                               "num_hidden_layers": 2, "vocab_size": 300)";
  EXPECT_NE(error_of(R"({"architectures": ["GPT2LMHeadModel"], )" + base + "}").find("unsupported architecture 'GPT2LMHeadModel'"), std::string::npos);
  EXPECT_NE(error_of(R"({"architectures": ["GPT2LMHeadModel"], )" + base + "}").find("LlamaForCausalLM"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type": "llama", "hidden_size": 64})").find("missing field"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type": "llama", )" + base + R"(, "num_key_value_heads": 3})").find("multiple"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type": "llama", "hidden_size": -5, "intermediate_size": 96, "num_attention_heads": 4,
                        "num_hidden_layers": 2, "vocab_size": 300})").find("'hidden_size' = -5"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type": "llama", )" + base + R"(, "rope_scaling": {"type": "yarn", "factor": 4}})").find("yarn"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type": "llama", )" + base + R"(, "hidden_act": "gelu"})").find("gelu"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type": "llama", )" + base + R"(, "eos_token_id": 999})").find("eos_token_id"), std::string::npos);
  EXPECT_NE(error_of("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("{not json").find("config.json"), std::string::npos);
}
