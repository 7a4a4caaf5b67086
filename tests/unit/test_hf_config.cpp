// config.json parsing for the supported families, and its errors.
#include <gtest/gtest.h>

#include <cmath>

#include "safetune/core/error.h"
#include "safetune/io/hf_config.h"
#include "test_util.h"

using namespace safetune;

namespace {
std::string error_of(const std::string& json_text) { return test_util::hf_config_error(json_text); }
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
  EXPECT_EQ(c.arch(), "llama");
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
  EXPECT_EQ(c.arch(), "qwen2");
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
  EXPECT_EQ(c.arch(), "mistral");
  ASSERT_TRUE(c.sliding_window.has_value());
  EXPECT_EQ(*c.sliding_window, 4096);
  EXPECT_TRUE(c.layer_slides(0));
  EXPECT_EQ(c.bos_token_id.value(), 1);
}

// Qwen3-8B's config.json as published: explicit head_dim, no biases, "sliding_window": null.
TEST(HfConfig, Qwen3) {
  auto c = io::parse_hf_config(R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 12288,
    "max_position_embeddings": 40960, "max_window_layers": 36, "model_type": "qwen3",
    "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})", "config.json");
  EXPECT_EQ(c.arch(), "qwen3");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias());
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_FALSE(c.traits().gemma_layout);
  EXPECT_DOUBLE_EQ(c.attention_scale(), 1.0 / std::sqrt(128.0));
  // attention_bias covers q, k, v and o; a window when switched on, upper layers only.
  auto b = io::parse_hf_config(R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "head_dim": 32,
    "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 4, "vocab_size": 300,
    "attention_bias": true, "use_sliding_window": true, "sliding_window": 16, "max_window_layers": 2,
    "tie_word_embeddings": true})", "config.json");
  EXPECT_TRUE(b.attention_bias);
  EXPECT_TRUE(b.o_proj_bias());
  EXPECT_TRUE(b.tie_word_embeddings);
  EXPECT_FALSE(b.layer_slides(1));
  EXPECT_TRUE(b.layer_slides(2));
}

// use_sliding_window true with "sliding_window": null is HF's "no window" (the window is
// None), for Qwen2 and Qwen3 alike, not a missing field.
TEST(HfConfig, NullSlidingWindowMeansNone) {
  for (const char* arch : {"Qwen2ForCausalLM", "Qwen3ForCausalLM"}) {
    auto c = io::parse_hf_config(std::string(R"({"architectures": [")") + arch + R"("], "hidden_size": 64,
      "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 4, "vocab_size": 300,
      "use_sliding_window": true, "sliding_window": null, "max_window_layers": 2})", "config.json");
    EXPECT_FALSE(c.sliding_window.has_value()) << arch;
    EXPECT_FALSE(c.layer_slides(3)) << arch;
  }
}

// google/gemma-2-9b-it's config.json as published (no tie_word_embeddings: HF's default,
// tied).
TEST(HfConfig, Gemma2) {
  auto c = io::parse_hf_config(R"({
    "architectures": ["Gemma2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid",
    "eos_token_id": 1, "final_logit_softcapping": 30.0, "head_dim": 256,
    "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 3584,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 8192,
    "model_type": "gemma2", "num_attention_heads": 16, "num_hidden_layers": 42,
    "num_key_value_heads": 8, "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0, "sliding_window": 4096, "sliding_window_size": 4096,
    "torch_dtype": "float32", "transformers_version": "4.42.0.dev0", "use_cache": true,
    "vocab_size": 256000})", "config.json");
  EXPECT_EQ(c.arch(), "gemma2");
  EXPECT_TRUE(c.traits().gemma_layout);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.hidden_act, "gelu_pytorch_tanh");
  EXPECT_EQ(c.attn_logit_softcapping.value_or(0), 50.0);
  EXPECT_EQ(c.final_logit_softcapping.value_or(0), 30.0);
  EXPECT_DOUBLE_EQ(c.attention_scale(), 1.0 / 16.0);
  EXPECT_EQ(c.sliding_window.value_or(0), 4096);
  EXPECT_TRUE(c.layer_slides(0));
  EXPECT_FALSE(c.layer_slides(1));
  EXPECT_TRUE(c.layer_slides(40));
  // gemma-2-27b: query_pre_attn_scalar = hidden / heads = 144, not head_dim = 128.
  auto big = io::parse_hf_config(R"({"architectures": ["Gemma2ForCausalLM"], "hidden_size": 4608, "head_dim": 128,
    "intermediate_size": 36864, "num_attention_heads": 32, "num_key_value_heads": 16, "num_hidden_layers": 46,
    "vocab_size": 256000, "query_pre_attn_scalar": 144})", "config.json");
  EXPECT_DOUBLE_EQ(big.attention_scale(), 1.0 / 12.0);
  EXPECT_EQ(big.attn_logit_softcapping.value_or(0), 50.0);  // Gemma 2's defaults when absent
}

// google/gemma-3-1b-it's config.json as published: soft-caps null, every 6th layer global,
// a local RoPE base for the others, q/k norms.
TEST(HfConfig, Gemma3) {
  auto c = io::parse_hf_config(R"({
    "architectures": ["Gemma3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "attn_logit_softcapping": null, "bos_token_id": 2, "cache_implementation": "hybrid",
    "eos_token_id": [1, 106], "final_logit_softcapping": null, "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152, "initializer_range": 0.02,
    "intermediate_size": 6912, "max_position_embeddings": 32768, "model_type": "gemma3_text",
    "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1, "pad_token_id": 0,
    "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000,
    "rope_scaling": null, "rope_theta": 1000000, "sliding_window": 512, "sliding_window_pattern": 6,
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0", "use_cache": true,
    "vocab_size": 262144})", "config.json");
  EXPECT_EQ(c.arch(), "gemma3");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attn_logit_softcapping.has_value());
  EXPECT_FALSE(c.final_logit_softcapping.has_value());
  EXPECT_EQ(c.rope_local_base_freq.value_or(0), 10000.0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1000000.0);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 106}));
  for (int64_t i = 0; i < 26; ++i) EXPECT_EQ(c.layer_slides(i), (i + 1) % 6 != 0) << i;
  // Fields left out take HF's Gemma3TextConfig defaults: head_dim 256 (not hidden /
  // heads), rope_theta 1e6, window 4096, query_pre_attn_scalar 256; Qwen3's head_dim 128.
  auto d = io::parse_hf_config(R"({"architectures": ["Gemma3ForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 300})", "config.json");
  EXPECT_EQ(d.head_dim, 256);
  EXPECT_DOUBLE_EQ(d.rope_theta, 1000000.0);
  EXPECT_EQ(d.sliding_window.value_or(0), 4096);
  EXPECT_DOUBLE_EQ(d.attention_scale(), 1.0 / 16.0);
  EXPECT_EQ(io::parse_hf_config(R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 300})", "config.json")
                .head_dim,
            128);
  // Newer transformers write layer_types; it decides.
  auto t = io::parse_hf_config(R"({"architectures": ["Gemma3ForCausalLM"], "hidden_size": 64, "head_dim": 16,
    "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 300,
    "sliding_window": 8, "layer_types": ["full_attention", "sliding_attention", "full_attention"],
    "rope_scaling": {"rope_type": "linear", "factor": 8.0}})", "config.json");
  EXPECT_FALSE(t.layer_slides(0));
  EXPECT_TRUE(t.layer_slides(1));
  EXPECT_EQ(t.rope_scaling.type, "linear");
  // A written config reads back the same, model_type gemma3_text included.
  auto back = io::parse_hf_config(io::hf_config_json(c), "again.json");
  EXPECT_EQ(back.arch(), "gemma3");
  EXPECT_NE(io::hf_config_json(c).find("\"gemma3_text\""), std::string::npos);
  for (int64_t i = 0; i < 26; ++i) EXPECT_EQ(back.layer_slides(i), c.layer_slides(i)) << i;
  EXPECT_EQ(back.rope_local_base_freq, c.rope_local_base_freq);
  EXPECT_FALSE(back.final_logit_softcapping.has_value());
  auto g2 = io::decoder_config("gemma2", {300, 64, 96, 2, 4, 2});
  auto g2back = io::parse_hf_config(io::hf_config_json(g2), "again.json");
  EXPECT_EQ(g2back.final_logit_softcapping, g2.final_logit_softcapping);
  EXPECT_EQ(g2back.attn_logit_softcapping, g2.attn_logit_softcapping);
  EXPECT_DOUBLE_EQ(g2back.attention_scale(), g2.attention_scale());
}

// What the new families' configs may say that is not implemented is refused by name.
TEST(HfConfig, RefusesWhatIsNotImplemented) {
  const std::string g3 = R"({"architectures": ["Gemma3ForCausalLM"], "hidden_size": 64, "head_dim": 16,
    "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 300)";
  EXPECT_NE(error_of(g3 + R"(, "hidden_activation": "gelu"})").find("hidden_activation 'gelu'"), std::string::npos);
  // hidden_act is not what HF's Gemma MLP reads: it does not change the activation.
  EXPECT_EQ(io::parse_hf_config(g3 + R"(, "hidden_act": "silu"})", "config.json").hidden_act, "gelu_pytorch_tanh");
  EXPECT_NE(error_of(g3 + R"(, "use_bidirectional_attention": true})").find("use_bidirectional_attention"),
            std::string::npos);
  EXPECT_NE(error_of(g3 + R"(, "attention_dropout": 0.1})").find("attention_dropout"), std::string::npos);
  EXPECT_NE(error_of(g3 + R"(, "rope_scaling": {"rope_type": "yarn", "factor": 8}})").find("yarn"), std::string::npos);
  EXPECT_NE(error_of(g3 + R"(, "sliding_window": null})").find("sliding_window"), std::string::npos);
  EXPECT_NE(error_of(g3 + R"(, "layer_types": ["full_attention"]})").find("layer_types"), std::string::npos);
  EXPECT_NE(error_of(g3 + R"(, "layer_types": ["chunked_attention", "full_attention", "full_attention"]})")
                .find("chunked_attention"),
            std::string::npos);
  // Gemma 3's multimodal wrapper is another architecture.
  EXPECT_NE(error_of(R"({"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3"})")
                .find("Gemma3ForConditionalGeneration"),
            std::string::npos);
}

// transformers 5 writes RoPE as rope_parameters (Gemma 3: one object per layer type) and
// "dtype" for "torch_dtype"; fields as its save_pretrained writes them.
TEST(HfConfig, Transformers5Format) {
  const std::string shape = R"("hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4,
    "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 300, "transformers_version": "5.25.0")";
  auto l = io::parse_hf_config(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "dtype": "bfloat16",
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, )" + shape + "}", "config.json");
  EXPECT_DOUBLE_EQ(l.rope_theta, 500000.0);
  EXPECT_EQ(l.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(l.rope_scaling.factor, 8.0);
  EXPECT_EQ(l.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(l.torch_dtype, "bfloat16");
  auto q = io::parse_hf_config(R"({"architectures": ["Qwen3ForCausalLM"], "dtype": "float32",
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, )" + shape + "}", "config.json");
  EXPECT_DOUBLE_EQ(q.rope_theta, 1000000.0);
  EXPECT_EQ(q.rope_scaling.type, "none");
  EXPECT_EQ(q.torch_dtype, "float32");
  // Where both are written, rope_parameters decides, as in transformers 5; a theta absent
  // from it is the top-level one.
  EXPECT_DOUBLE_EQ(io::parse_hf_config(R"({"architectures": ["MistralForCausalLM"], "rope_theta": 5.0,
    "rope_parameters": {"rope_type": "linear", "factor": 2.0}, )" + shape + "}", "config.json").rope_theta, 5.0);
  EXPECT_DOUBLE_EQ(io::parse_hf_config(R"({"architectures": ["MistralForCausalLM"], "rope_theta": 5.0,
    "rope_parameters": {"rope_type": "default", "rope_theta": 7.0}, )" + shape + "}", "config.json").rope_theta, 7.0);
  // Gemma 3: full_attention gives the global base and scaling, sliding_attention the local base.
  auto g = io::parse_hf_config(R"({"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
    "head_dim": 16, "sliding_window": 8, "_sliding_window_pattern": 6,
    "layer_types": ["sliding_attention", "full_attention"],
    "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 20000.0},
                        "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}, )" + shape + "}",
                               "config.json");
  EXPECT_DOUBLE_EQ(g.rope_theta, 20000.0);
  EXPECT_EQ(g.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(g.rope_scaling.factor, 4.0);
  EXPECT_EQ(g.rope_local_base_freq.value_or(0), 100.0);
  EXPECT_TRUE(g.layer_slides(0));
  EXPECT_FALSE(g.layer_slides(1));
  // What is not implemented is refused by name.
  const std::string g3 = R"({"architectures": ["Gemma3ForCausalLM"], "head_dim": 16, )" + shape;
  EXPECT_NE(error_of(g3 + R"(, "rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 4.0}}})")
                .find("yarn"),
            std::string::npos);
  EXPECT_NE(error_of(g3 + R"(, "rope_parameters": {"sliding_attention": {"rope_type": "linear", "factor": 4.0}}})")
                .find("rope_parameters.sliding_attention"),
            std::string::npos);
  EXPECT_NE(error_of(g3 + R"(, "rope_parameters": {"chunked_attention": {}, "full_attention": {}}})")
                .find("chunked_attention"),
            std::string::npos);
  const std::string ll = R"({"architectures": ["LlamaForCausalLM"], )" + shape;
  EXPECT_NE(error_of(ll + R"(, "rope_parameters": {"rope_type": "dynamic", "factor": 2.0}})").find("dynamic"),
            std::string::npos);
  EXPECT_NE(error_of(ll + R"(, "rope_parameters": {"rope_theta": 10000.0, "partial_rotary_factor": 0.5}})")
                .find("partial_rotary_factor"),
            std::string::npos);
  EXPECT_NE(error_of(ll + R"(, "rope_parameters": {"full_attention": {}}})").find("per layer type are not supported for LlamaForCausalLM"), std::string::npos);
  EXPECT_NE(error_of(ll + R"(, "rope_parameters": 10000.0})").find("rope_parameters"), std::string::npos);
}

TEST(HfConfig, RoundTripThroughJson) {
  auto c = io::parse_hf_config(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2,
    "num_hidden_layers": 2, "vocab_size": 300, "tie_word_embeddings": true,
    "rope_scaling": {"type": "linear", "factor": 2.0}, "eos_token_id": 2})", "config.json");
  auto d = io::parse_hf_config(io::hf_config_json(c), "again.json");
  EXPECT_EQ(d.arch(), c.arch());
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
