// Attention as HF's Llama-family and Gemma decoders compute it: rotate-half RoPE (with
// "linear" and "llama3" scaling), grouped-query attention, q/k RMSNorm (Qwen3, Gemma 3),
// a sliding window, Gemma's query scale and soft-capping, padding masks, a KV cache; the
// q/k/v projections separate or fused into one qkv_proj (Phi-3).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "safetune/io/hf_config.h"
#include "safetune/model/layers.h"

namespace safetune::model {

using io::ModelConfig;

// Per-layer keys and values of the tokens seen so far, preallocated to max_len slots.
// Slot s of row b holds the s-th token given to forward() for that row; `valid` says
// which slots hold real tokens (padding does not), `count` how many real tokens each row
// has so far (the position of its next token).
struct KVCache {
  KVCache(const ModelConfig& cfg, int64_t batch, int64_t max_len, const at::TensorOptions& opts);
  std::vector<at::Tensor> k, v;  // per layer [B, kv_heads, max_len, head_dim]
  at::Tensor valid;              // [B, max_len] bool
  at::Tensor count;              // [B] int64
  int64_t batch = 0, length = 0, max_len = 0;
};

// Which keys each query may see, for one forward (make_mask).
struct AttentionMask {
  // Plain causal attention over this call's tokens (no cache history, no padding): the
  // fused kernels' is_causal path, or one shared [T,T] additive mask.
  bool causal = false;
  at::Tensor allow, allow_window;  // [B,T,S] bool (true = may attend), when !causal
};

// Masks over slots: this call's and the cache's token slots. Within a row, real tokens are
// contiguous after left padding, so slot distance equals position distance and the
// sliding window can be applied on slots as HF does. `key_valid` ([B,S], the cache's or
// this call's real tokens; undefined when causal) says which slots hold tokens.
AttentionMask make_mask(bool causal, const at::Tensor& key_valid, int64_t past, int64_t T, int64_t window,
                        const c10::Device& dev);

// The RoPE cos/sin of one forward's positions.
struct RopeTables {
  at::Tensor cos, sin;  // [B,1,T,D/2] in the compute dtype
  int64_t window = 0;
};

// cos/sin of position x inverse frequency, in fp32 (as HF), then the compute dtype.
RopeTables make_rope_tables(const at::Tensor& pos, const at::Tensor& inv_freq, int64_t window, at::ScalarType dt);

// RoPE inverse frequencies [head_dim/2] fp32, as HF's ROPE_INIT_FUNCTIONS compute them
// ("default", "linear", "llama3"). `local`: Gemma 3's sliding layers, the default
// frequencies of rope_local_base_freq.
at::Tensor rope_inv_freq(const ModelConfig& cfg, bool local = false);

class Attention : public torch::nn::Module {
 public:
  Attention(const ModelConfig& cfg, const at::TensorOptions& opts);
  // x [B,T,d] -> [B,T,d]. With a cache, this call's keys/values go into layer `layer`'s
  // slots [past, past+T) and attention reads slots [0, past+T).
  at::Tensor forward(const at::Tensor& x, const RopeTables& rope, const AttentionMask& mask, bool slides,
                     KVCache* cache, int64_t layer, int64_t past) const;
  std::shared_ptr<Linear> q_proj, k_proj, v_proj;  // null when fused into qkv_proj
  std::shared_ptr<Linear> qkv_proj;                // Phi-3: [q; k; v] in one; else null
  std::shared_ptr<Linear> o_proj;
  std::shared_ptr<RMSNorm> q_norm, k_norm;  // per head, before RoPE (Qwen3, Gemma 3); else null
  int64_t num_heads, num_kv_heads, head_dim;
  double scale;    // of the scores
  double softcap;  // attention-logit soft-capping; 0: none
};

}  // namespace safetune::model
