// The decoder: the MLP, the layer (one body for the plain and the activation-checkpointed
// paths), the layer stack with its embeddings, final norm and lm_head, and HF's weight init.
// Attention and RoPE are in attention.cpp, the small modules in layers.cpp.
//
// When no gradient is needed on CPU in fp32 (inference, frozen reference models), fused
// kernels from cpu_kernels.h replace chains of memory-bound ATen ops: residual add + RMSNorm
// in one pass, and Gemma's GeGLU gate. With gradients the plain ATen ops run; tests check
// that both give the same result.
#include "safetune/model/transformer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

#include "safetune/core/error.h"
#include "safetune/model/activation_checkpoint.h"
#include "safetune/model/cpu_kernels.h"

namespace safetune::model {

// ---------------------------------------------------------------------------------------
// The MLP and the layer

MLP::MLP(const ModelConfig& cfg, const at::TensorOptions& opts) : gelu_tanh(cfg.hidden_act == "gelu_pytorch_tanh") {
  const int64_t d = cfg.hidden_size, f = cfg.intermediate_size;
  if (cfg.traits().fused_gate_up) {
    gate_up_proj = register_module("gate_up_proj", std::make_shared<Linear>(d, 2 * f, cfg.mlp_bias, opts));
  } else {
    gate_proj = register_module("gate_proj", std::make_shared<Linear>(d, f, cfg.mlp_bias, opts));
    up_proj = register_module("up_proj", std::make_shared<Linear>(d, f, cfg.mlp_bias, opts));
  }
  down_proj = register_module("down_proj", std::make_shared<Linear>(f, d, cfg.mlp_bias, opts));
}

at::Tensor MLP::forward(const at::Tensor& x) const {
  at::Tensor g, u;
  if (gate_up_proj) {  // HF's Phi-3: gate, up = gate_up_proj(x).chunk(2, -1)
    const at::Tensor gu = gate_up_proj->forward(x);
    const int64_t f = gu.size(-1) / 2;
    g = gu.narrow(-1, 0, f);
    u = gu.narrow(-1, f, f);
  } else {
    g = gate_proj->forward(x);
    u = up_proj->forward(x);
  }
  if (at::GradMode::is_enabled()) return down_proj->forward((gelu_tanh ? at::gelu(g, "tanh") : at::silu(g)) * u);
  if (gelu_tanh) {  // HF's gelu_pytorch_tanh
    if (fused_cpu(g) && g.is_contiguous() && u.is_contiguous()) cpu::gelu_tanh_mul_(g, u);
    else at::gelu_out(g, g, "tanh").mul_(u);
    return down_proj->forward(g);
  }
  at::silu_(g);
  g.mul_(u);
  return down_proj->forward(g);
}

DecoderLayer::DecoderLayer(const ModelConfig& cfg, int64_t i, const at::TensorOptions& opts)
    : index(i), slides(cfg.layer_slides(i)) {
  self_attn = register_module("self_attn", std::make_shared<Attention>(cfg, opts));
  mlp = register_module("mlp", std::make_shared<MLP>(cfg, opts));
  const bool gemma = cfg.traits().gemma_layout;
  auto norm = [&](const char* name) {
    return register_module(name, std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps, opts, gemma));
  };
  input_layernorm = norm("input_layernorm");
  post_attention_layernorm = norm("post_attention_layernorm");
  if (gemma) {
    pre_feedforward_layernorm = norm("pre_feedforward_layernorm");
    post_feedforward_layernorm = norm("post_feedforward_layernorm");
  }
}

namespace {

// Adds a sub-block's output to the residual stream h and returns the next norm of it: one
// fused pass when no gradient is needed on CPU.
// Without a norm, returns h.
at::Tensor add_norm(at::Tensor& h, const at::Tensor& delta, const RMSNorm* norm) {
  if (norm && fused_cpu(h) && h.is_contiguous() && delta.is_contiguous() && norm->weight.scalar_type() == at::kFloat)
    return cpu::add_rms_norm_(h, delta, norm->scale(), norm->eps);
  if (at::GradMode::is_enabled()) h = h + delta;
  else h.add_(delta);  // h is this forward's own tensor
  return norm ? norm->forward(h) : h;
}

}  // namespace

at::Tensor DecoderLayer::forward(at::Tensor& h, const at::Tensor& x, const LayerInputs& in, const RMSNorm* next) const {
  const RopeTables& rope = slides ? in.rope_local : in.rope;
  at::Tensor a = self_attn->forward(x, rope, in.mask, slides, in.cache, index, in.past);
  at::Tensor m = mlp->forward(add_norm(h, attn_delta(a), &mlp_input_norm()));
  return add_norm(h, mlp_delta(m), next);
}

std::vector<at::Tensor> DecoderLayer::inputs_for_backward() const {
  std::vector<at::Tensor> out = parameters();
  for (const auto& module : modules(/*include_self=*/false))
    if (const auto* linear = dynamic_cast<const Linear*>(module.get()); linear && linear->lora_A.defined()) {
      out.push_back(linear->lora_A);
      out.push_back(linear->lora_B);
    }
  return out;
}

DecoderModel::DecoderModel(const ModelConfig& cfg, const at::TensorOptions& opts) {
  embed_tokens = register_module("embed_tokens", std::make_shared<Embedding>(cfg.vocab_size, cfg.hidden_size, opts));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    layer_ptrs.push_back(std::make_shared<DecoderLayer>(cfg, i, opts));
    layers->push_back(layer_ptrs.back());
  }
  norm = register_module("norm", std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps, opts,
                                                           cfg.traits().gemma_layout));
}

// ---------------------------------------------------------------------------------------
// The model

Transformer::Transformer(const ModelConfig& cfg, const at::TensorOptions& opts) : cfg_(cfg) {
  if (cfg.hidden_act != "silu" && cfg.hidden_act != "gelu_pytorch_tanh")
    throw InputError("hidden_act '" + cfg.hidden_act + "' is not supported (silu, gelu_pytorch_tanh)");
  if (cfg.head_dim % 2 != 0 || cfg.num_attention_heads % cfg.num_key_value_heads != 0)
    throw InputError("head_dim must be even and num_attention_heads a multiple of num_key_value_heads");
  model = register_module("model", std::make_shared<DecoderModel>(cfg, opts));
  if (!cfg.tie_word_embeddings)
    lm_head = register_module("lm_head", std::make_shared<Linear>(cfg.hidden_size, cfg.vocab_size, false, opts));
  inv_freq_ = rope_inv_freq(cfg);
  if (cfg.rope_local_base_freq) inv_freq_local_ = rope_inv_freq(cfg, /*local=*/true);
}

at::Tensor Transformer::lm_head_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

at::Tensor Transformer::logits(const at::Tensor& hidden) const {
  return softcap_logits(lm_head ? lm_head->forward(hidden) : at::linear(hidden, model->embed_tokens->weight));
}

at::Tensor Transformer::softcap_logits(const at::Tensor& z) const {
  const double cap = final_logit_softcap();
  if (cap <= 0) return z;
  // HF: logits / cap, tanh, * cap. In place when nothing needs z for a gradient: the
  // logits are the largest tensor of an inference forward.
  if (!at::GradMode::is_enabled() || !z.requires_grad()) {
    if (z.device().is_cpu() && z.is_contiguous() && z.scalar_type() == at::kFloat) cpu::softcap_(z, cap);
    else z.div_(cap).tanh_().mul_(cap);
    return z;
  }
  return at::tanh(z / cap) * cap;
}

int64_t Transformer::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

void Transformer::init_weights(uint64_t seed, double std, bool randomise_all) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    at::Tensor& p = item.value();
    const bool is_norm = name.size() >= 11 && name.compare(name.size() - 11, 11, "norm.weight") == 0;
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    // Gemma's norms scale by (1 + w): HF initialises w to 0, the same unit scale.
    const double unit = cfg_.traits().gemma_layout ? 0.0 : 1.0;
    if (is_norm && !randomise_all) {
      p.fill_(unit);
    } else if (is_bias && !randomise_all) {
      p.zero_();
    } else if (is_norm) {
      at::Tensor w = at::empty(p.sizes(), at::TensorOptions().dtype(at::kFloat));
      p.copy_(w.normal_(unit, 0.1, gen));
    } else {
      at::Tensor w = at::empty(p.sizes(), at::TensorOptions().dtype(at::kFloat));
      w.normal_(0.0, std, gen);
      if (name == "model.embed_tokens.weight" && cfg_.pad_token_id && *cfg_.pad_token_id >= 0 &&
          *cfg_.pad_token_id < cfg_.vocab_size)
        w[*cfg_.pad_token_id].zero_();
      p.copy_(w);
    }
  }
}

at::Tensor Transformer::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, KVCache* cache) {
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be [B,T]");
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const int64_t past = cache ? cache->length : 0, S = past + T;
  const c10::Device dev = device();
  const at::ScalarType dt = dtype();
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(dev);
  if (cache) {
    TORCH_CHECK(cache->batch == B, "KV cache batch ", cache->batch, " != input batch ", B);
    TORCH_CHECK(S <= cache->max_len, "KV cache holds ", cache->max_len, " tokens; ", S, " needed");
  }
  at::Tensor ids = input_ids.to(dev, at::kLong);

  // Which of this call's tokens are real; "no padding" lets attention use plain causal masks.
  at::Tensor real;
  if (attention_mask.defined()) {
    TORCH_CHECK(attention_mask.sizes() == input_ids.sizes(), "attention_mask must match input_ids [B,T]");
    real = attention_mask.to(dev).to(at::kBool);
    if (real.all().item<bool>()) real = at::Tensor();
  }

  // Positions: each row counts only its real tokens (HF: cumsum(mask) - 1), continuing
  // from what the cache has seen.
  at::Tensor pos;
  if (real.defined()) pos = (real.to(at::kLong).cumsum(1) - 1).clamp_min(0);
  else pos = at::arange(T, long_opts).unsqueeze(0).expand({B, T});
  if (cache) pos = pos + cache->count.unsqueeze(1);

  const int64_t window = cfg_.sliding_window ? *cfg_.sliding_window : 0;
  if (cache) {
    cache->valid.narrow(1, past, T).copy_(real.defined() ? real : at::ones({B, T}, long_opts.dtype(at::kBool)));
  }
  const bool causal = !cache && !real.defined();
  LayerInputs in;
  in.mask = make_mask(causal, causal ? at::Tensor() : (cache ? cache->valid.narrow(1, 0, S) : real), past, T, window, dev);
  in.rope = make_rope_tables(pos, inv_freq_, window, dt);
  // Gemma 3's sliding layers rotate with their own base.
  in.rope_local = inv_freq_local_.defined() ? make_rope_tables(pos, inv_freq_local_, window, dt) : in.rope;
  in.cache = cache;
  in.past = past;

  // Residual stream h; each sub-block reads norm(h) and adds its output back.
  at::Tensor h = model->embed_tokens->forward(ids);
  if (cfg_.traits().gemma_layout) {
    // HF: embeddings * tensor(sqrt(hidden), dtype=embeddings.dtype), the factor rounded to
    // the dtype the model runs in (33.94 -> 33.75 in bf16 at hidden 1152).
    const double normalizer = at::scalar_tensor(std::sqrt(static_cast<double>(cfg_.hidden_size)), at::kDouble)
                                  .to(dt).item<double>();
    h = h * normalizer;
  }
  const auto& layers = model->layer_ptrs;
  if (activation_checkpointing && at::GradMode::is_enabled() && !cache) {
    // Keep each layer's input, not its activations, and run the layer again in backward;
    // the block owns copies of what it reads, since backward runs it later.
    for (const auto& layer : layers) {
      BlockFn block = [layer, in](const at::Tensor& hin) {
        at::Tensor hl = hin;
        return layer->forward(hl, layer->input_layernorm->forward(hl), in, nullptr);
      };
      h = checkpointed(std::move(block), h, layer->inputs_for_backward());
    }
    return model->norm->forward(h);
  }
  at::Tensor x = layers.empty() ? model->norm->forward(h) : layers[0]->input_layernorm->forward(h);
  for (size_t i = 0; i < layers.size(); ++i)
    x = layers[i]->forward(h, x, in, i + 1 < layers.size() ? layers[i + 1]->input_layernorm.get() : model->norm.get());
  if (cache) {
    cache->count += real.defined() ? real.to(at::kLong).sum(1) : at::full({B}, T, long_opts);
    cache->length = S;
  }
  return x;
}

}  // namespace safetune::model