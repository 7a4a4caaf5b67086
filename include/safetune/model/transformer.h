// The decoder-only transformer of the families of io/model_family.h: Hugging Face's Llama,
// Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3 (text) and Phi-3.
//
// Parameter names are exactly HF's ("model.layers.0.self_attn.q_proj.weight", ...), so
// a checkpoint loads by name without renaming, and a saved model is an HF checkpoint.
// forward() returns the final hidden states (after the last RMSNorm); the lm_head is
// applied separately (logits(), or lm_head_weight() for fused losses on top of it).
//
// Semantics follow HF's modeling_llama.py / modeling_qwen2.py / modeling_mistral.py:
// rotate-half RoPE (with "linear" and "llama3" scaling), grouped-query attention,
// RMSNorm computed in fp32, SiLU-gated MLP, optional q/k/v(/o) bias, a sliding window on
// the layers ModelConfig::layer_slides() names, and padding masks with positions taken
// as cumsum(mask) - 1 so that left-padded batches see the same positions as unpadded ones.
// modeling_qwen3.py adds per-head q/k RMSNorm before RoPE. modeling_gemma2.py /
// modeling_gemma3.py: embeddings times sqrt(hidden) rounded to the compute dtype, RMSNorm
// as x * (1 + w) in fp32, four norms per layer (the attention's and the MLP's outputs are
// normed before the residual add), tanh-GELU-gated MLP, scores scaled by
// query_pre_attn_scalar^-1/2 and optionally soft-capped, soft-capped final logits; Gemma 3
// also has q/k norms and a separate RoPE base on its sliding layers. modeling_phi3.py: the
// Llama layer with q/k/v fused into qkv_proj and gate/up into gate_up_proj.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "safetune/io/hf_config.h"
#include "safetune/model/attention.h"
#include "safetune/model/layers.h"

namespace safetune::model {

class MLP : public torch::nn::Module {
 public:
  MLP(const ModelConfig& cfg, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x) const;
  std::shared_ptr<Linear> gate_proj, up_proj;  // null when fused into gate_up_proj
  std::shared_ptr<Linear> gate_up_proj;        // Phi-3: [gate; up] in one; else null
  std::shared_ptr<Linear> down_proj;
  bool gelu_tanh;  // act(gate) is tanh-approximate GELU (Gemma), else SiLU
};

// What every layer of one forward reads besides the residual stream: the RoPE tables (the
// sliding layers' own where they differ), the mask, and the KV cache with its length.
struct LayerInputs {
  RopeTables rope, rope_local;
  AttentionMask mask;
  KVCache* cache = nullptr;
  int64_t past = 0;
};

class DecoderLayer : public torch::nn::Module {
 public:
  DecoderLayer(const ModelConfig& cfg, int64_t index, const at::TensorOptions& opts);
  // The layer on the residual stream h, given x = input_layernorm(h): h gains the
  // attention's and the MLP's outputs (in place when no gradient is needed) and the result
  // is next(h), the next layer's input norm or the final norm, in one fused pass on CPU;
  // h itself when `next` is null (the activation-checkpointed blocks).
  at::Tensor forward(at::Tensor& h, const at::Tensor& x, const LayerInputs& in, const RMSNorm* next) const;
  // Every tensor the layer's output depends on that may need a gradient: its parameters and
  // the LoRA adapters of its linear modules.
  std::vector<at::Tensor> inputs_for_backward() const;
  std::shared_ptr<Attention> self_attn;
  std::shared_ptr<MLP> mlp;
  // HF's names. Llama-style layers: input_layernorm before attention,
  // post_attention_layernorm before the MLP. Gemma: post_attention_layernorm on the
  // attention's output, pre_/post_feedforward_layernorm around the MLP.
  std::shared_ptr<RMSNorm> input_layernorm, post_attention_layernorm;
  std::shared_ptr<RMSNorm> pre_feedforward_layernorm, post_feedforward_layernorm;  // Gemma; else null
  // The norm the MLP reads, and the sub-blocks' outputs as the residual stream adds them.
  const RMSNorm& mlp_input_norm() const { return pre_feedforward_layernorm ? *pre_feedforward_layernorm : *post_attention_layernorm; }
  at::Tensor attn_delta(const at::Tensor& a) const { return pre_feedforward_layernorm ? post_attention_layernorm->forward(a) : a; }
  at::Tensor mlp_delta(const at::Tensor& m) const { return post_feedforward_layernorm ? post_feedforward_layernorm->forward(m) : m; }
  int64_t index;
  bool slides;
};

// HF's LlamaModel: embeddings, layers, final norm (registered as "model").
class DecoderModel : public torch::nn::Module {
 public:
  DecoderModel(const ModelConfig& cfg, const at::TensorOptions& opts);
  std::shared_ptr<Embedding> embed_tokens;
  torch::nn::ModuleList layers;
  std::vector<std::shared_ptr<DecoderLayer>> layer_ptrs;  // typed views of `layers`
  std::shared_ptr<RMSNorm> norm;
};

class Transformer : public torch::nn::Module {
 public:
  // Parameters are allocated but not initialised: load weights or call init_weights().
  Transformer(const ModelConfig& cfg, const at::TensorOptions& opts);

  // input_ids [B,T] int64. attention_mask [B,T] of 0/1 for the tokens given here (undefined:
  // all real); with a cache, earlier calls' tokens are remembered there and this call's
  // tokens go into the next T slots. Returns the final hidden states [B,T,d].
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask = {},
                     KVCache* cache = nullptr);

  at::Tensor lm_head_weight() const;  // [V,d]; the embedding matrix when tied
  // hidden [...,d] -> [...,V], soft-capped when the config says so. Code that multiplies
  // by lm_head_weight() itself passes the result through softcap_logits().
  at::Tensor logits(const at::Tensor& hidden) const;
  // final_logit_softcapping: z -> cap * tanh(z / cap) (Gemma 2); z itself when off. Pass
  // a fresh tensor: when no gradient flows through z it is capped in place.
  at::Tensor softcap_logits(const at::Tensor& z) const;
  double final_logit_softcap() const { return cfg_.final_logit_softcapping.value_or(0.0); }

  // HF's _init_weights: normal(0, std) for linears and embeddings (the pad row zeroed),
  // zero biases, unit norms. Deterministic for a seed, whatever the device. With
  // `randomise_all`, biases ~ normal(0, std) and norm weights ~ 1 + normal(0, 0.1) too, so
  // that parity tests exercise them (HF's init leaves them trivial).
  void init_weights(uint64_t seed, double std = 0.02, bool randomise_all = false);

  const ModelConfig& config() const { return cfg_; }
  at::ScalarType dtype() const { return model->embed_tokens->weight.scalar_type(); }
  c10::Device device() const { return model->embed_tokens->weight.device(); }
  // Number of parameters (tied embeddings counted once).
  int64_t num_parameters() const;

  std::shared_ptr<DecoderModel> model;
  std::shared_ptr<Linear> lm_head;  // null when tie_word_embeddings
  // Training only: keep each layer's input, not its activations, and recompute the layer
  // during backward (model/activation_checkpoint.h). Used when gradients are on and no cache is given.
  bool activation_checkpointing = false;

 private:
  ModelConfig cfg_;
  at::Tensor inv_freq_;        // [head_dim/2] fp32 on CPU, scaling applied
  at::Tensor inv_freq_local_;  // Gemma 3's sliding layers (rope_local_base_freq); else undefined
};

}  // namespace safetune::model
