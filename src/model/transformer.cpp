// The HF Llama / Mistral / Qwen2 / Qwen3 / Gemma 2 / Gemma 3 decoder. Read top to bottom: dtype policy, the small
// modules (Linear, RMSNorm, Embedding), RoPE, masks, attention, MLP, the layer stack.
//
// Attention is at::scaled_dot_product_attention (fused kernels on CPU and CUDA), except with
// Gemma 2's attention soft-capping, which SDPA cannot express: there the scores are formed
// explicitly, as HF's eager attention does.
// When no gradient is needed on CPU in fp32 (inference, frozen reference models), fused
// kernels from cpu_kernels.h replace chains of memory-bound ATen ops: RoPE written straight
// into the [B, heads, T, D] layout (for keys: into the KV cache) and residual add + RMSNorm
// in one pass. With gradients the plain ATen ops run; tests check that both give the same
// result.
#include "safetune/model/transformer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "safetune/core/error.h"
#include "safetune/model/activation_checkpoint.h"
#include "safetune/model/cpu_kernels.h"

namespace safetune::model {

at::ScalarType compute_dtype_for(const c10::Device& device) {
  return device.is_cuda() ? at::kBFloat16 : at::kFloat;
}

// ---------------------------------------------------------------------------------------
// Small modules

Linear::Linear(int64_t in, int64_t out, bool has_bias, const at::TensorOptions& opts)
    : in_features(in), out_features(out) {
  weight = register_parameter("weight", at::empty({out, in}, opts));
  if (has_bias) bias = register_parameter("bias", at::empty({out}, opts));
}

at::Tensor Linear::forward(const at::Tensor& x) const {
  at::Tensor y = at::linear(x, weight, bias);
  if (lora_enabled && lora_A.defined() && lora_B.defined()) {
    // PEFT: dropout on the adapter's input only, in training (the base path sees x).
    const bool drop = lora_dropout > 0 && is_training() && at::GradMode::is_enabled();
    const at::Tensor xa = drop ? at::dropout(x, lora_dropout, /*train=*/true) : x;
    y = y + at::linear(at::linear(xa, lora_A), lora_B) * lora_scaling;
  }
  return y;
}

RMSNorm::RMSNorm(int64_t dim, double eps_, const at::TensorOptions& opts, bool plus_one_)
    : eps(eps_), plus_one(plus_one_) {
  weight = register_parameter("weight", at::empty({dim}, opts));
}

// Whether the fused CPU kernels (cpu_kernels.h) may replace the ATen ops for `t`.
static bool fused_cpu(const at::Tensor& t) {
  return !at::GradMode::is_enabled() && t.device().is_cpu() && t.scalar_type() == at::kFloat;
}

at::Tensor RMSNorm::scale() const { return plus_one ? weight.to(at::kFloat) + 1.0 : weight; }

at::Tensor RMSNorm::forward(const at::Tensor& x) const {
  if (fused_cpu(x) && x.is_contiguous() && weight.scalar_type() == at::kFloat) return cpu::rms_norm(x, scale(), eps);
  // HF: variance in fp32, normalise in fp32, cast back to the input dtype, then scale.
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  at::Tensor normed = xf * at::rsqrt(var + eps);
  // Gemma scales in fp32 before the cast (HF: "(x * (1.0 + w.float())).type_as(x)").
  if (plus_one) return (normed * scale()).to(x.scalar_type());
  return weight * normed.to(x.scalar_type());
}

Embedding::Embedding(int64_t num, int64_t dim, const at::TensorOptions& opts) {
  weight = register_parameter("weight", at::empty({num, dim}, opts));
}

at::Tensor Embedding::forward(const at::Tensor& ids) const { return at::embedding(weight, ids); }

// ---------------------------------------------------------------------------------------
// RoPE

at::Tensor rope_inv_freq(const ModelConfig& cfg, bool local) {
  // HF _compute_default_rope_parameters, in fp32 as HF does:
  //   inv_freq = 1 / base ** (arange(0, dim, 2).float() / dim)
  const int64_t dim = cfg.head_dim;
  at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  // Gemma 3's sliding layers: their own base and no scaling (HF builds a second rotary
  // embedding from a copy of the config with rope_theta = rope_local_base_freq and
  // rope_scaling = default).
  const double base = local ? cfg.rope_local_base_freq.value_or(cfg.rope_theta) : cfg.rope_theta;
  at::Tensor inv_freq = 1.0 / at::pow(base, exponent);
  if (local) return inv_freq.contiguous();
  const auto& rs = cfg.rope_scaling;
  if (rs.type == "linear") {
    inv_freq = inv_freq / rs.factor;
  } else if (rs.type == "llama3") {
    // HF _compute_llama3_parameters: keep high frequencies, divide low ones by `factor`,
    // interpolate smoothly in between.
    const double low_freq_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor;
    const double high_freq_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor;
    at::Tensor wavelen = 2 * M_PI / inv_freq;
    at::Tensor inv_freq_llama = at::where(wavelen > low_freq_wavelen, inv_freq / rs.factor, inv_freq);
    at::Tensor smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) /
                        (rs.high_freq_factor - rs.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * inv_freq_llama / rs.factor + smooth * inv_freq_llama;
    at::Tensor is_medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
    inv_freq = at::where(is_medium, smoothed, inv_freq_llama);
  } else if (rs.type != "none") {
    throw std::invalid_argument("unsupported rope_scaling type '" + rs.type + "'");
  }
  return inv_freq.contiguous();
}

namespace {

// Rotate-half RoPE of x [B,T,Hx,D] with c/s [B,1,T,D/2]; returns [B,Hx,T,D].
// With `out` defined (a [B,Hx,T,D] view, e.g. a cache slice) and no gradient needed, the
// result is written there directly.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& c, const at::Tensor& s, at::Tensor out = {}) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor xt = x.transpose(1, 2);  // [B,Hx,T,D] view
  at::Tensor x1 = xt.narrow(-1, 0, half), x2 = xt.narrow(-1, half, half);
  if (at::GradMode::is_enabled()) {
    // x * cos + rotate_half(x) * sin, with rotate_half(x) = [-x2, x1].
    at::Tensor r = at::cat({x1 * c - x2 * s, x2 * c + x1 * s}, -1);
    if (out.defined()) {
      out.copy_(r);
      return out;
    }
    return r;
  }
  if (!out.defined()) out = at::empty({x.size(0), x.size(2), x.size(1), x.size(3)}, x.options());
  if (fused_cpu(x) && x.stride(3) == 1 && c.scalar_type() == at::kFloat && c.is_contiguous() && s.is_contiguous()) {
    cpu::rope(x, c, s, out);
    return out;
  }
  at::Tensor o1 = out.narrow(-1, 0, half), o2 = out.narrow(-1, half, half);
  at::mul_out(o1, x1, c);
  o1.addcmul_(x2, s, -1);
  at::mul_out(o2, x2, c);
  o2.addcmul_(x1, s);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Masks

struct AttentionMask {
  // Plain causal attention over this call's tokens (no cache history, no padding): the
  // fused kernels' is_causal path, or one shared [T,T] additive mask.
  bool causal = false;
  at::Tensor allow, allow_window;  // [B,T,S] bool (true = may attend), when !causal
};

namespace {


at::Tensor causal_additive(int64_t T, int64_t window, const at::TensorOptions& opts) {
  // [T,T]: -inf above the diagonal, and (with a window) at distance >= window below it.
  at::Tensor i = at::arange(T, opts.dtype(at::kLong)).unsqueeze(1);
  at::Tensor j = at::arange(T, opts.dtype(at::kLong)).unsqueeze(0);
  at::Tensor blocked = j > i;
  if (window > 0) blocked = blocked.logical_or(i - j >= window);
  at::Tensor m = at::zeros({T, T}, opts);
  return m.masked_fill_(blocked, -std::numeric_limits<double>::infinity());
}

// Attention over q [B,H,T,D], k/v [B,Hkv,S,D]; returns [B,H,T,D]. The scores are
// q.k times `scale`, soft-capped when softcap > 0.
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionMask& mask,
                  bool slides, int64_t window, double scale, double softcap) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), S = k.size(2), n_rep = H / Hkv;
  at::Tensor kk = k, vv = v;
  if (n_rep > 1) {  // HF repeat_kv: query head h reads key head h / n_rep
    kk = k.unsqueeze(2).expand({B, Hkv, n_rep, S, D}).reshape({B, H, S, D});
    vv = v.unsqueeze(2).expand({B, Hkv, n_rep, S, D}).reshape({B, H, S, D});
  }
  at::Tensor m;  // true = may attend; undefined: plain causal
  if (mask.causal && slides && T > window) {  // causal within a window: [T,T]
    m = at::isfinite(causal_additive(T, window, q.options().dtype(at::kFloat)));
  } else if (!mask.causal) {
    m = (slides ? mask.allow_window : mask.allow).unsqueeze(1);
  }
  if (softcap > 0) {
    // SDPA cannot soft-cap: HF's eager attention, scores explicitly.
    if (!m.defined()) m = at::isfinite(causal_additive(T, 0, q.options().dtype(at::kFloat)));
    at::Tensor scores = at::matmul(q, kk.transpose(-1, -2)) * scale;
    scores = at::tanh(scores / softcap) * softcap;
    scores = scores.masked_fill(m.logical_not(), -std::numeric_limits<double>::infinity());
    at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
    return at::matmul(probs, vv);
  }
  // SDPA scales by 1/sqrt(D); another scale (Gemma's query_pre_attn_scalar) goes into q.
  const double extra = scale * std::sqrt(static_cast<double>(D));
  const at::Tensor qs = std::abs(extra - 1.0) < 1e-12 ? q : q * extra;
  if (!m.defined()) return at::scaled_dot_product_attention(qs, kk, vv, {}, 0.0, /*is_causal=*/true);
  return at::scaled_dot_product_attention(qs, kk, vv, m, 0.0, false);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Attention, MLP, layers

Attention::Attention(const ModelConfig& cfg, const at::TensorOptions& opts)
    : num_heads(cfg.num_attention_heads),
      num_kv_heads(cfg.num_key_value_heads),
      head_dim(cfg.head_dim),
      scale(cfg.attention_scale()),
      softcap(cfg.attn_logit_softcapping.value_or(0.0)) {
  const int64_t d = cfg.hidden_size;
  q_proj = register_module("q_proj", std::make_shared<Linear>(d, num_heads * head_dim, cfg.attention_bias, opts));
  k_proj = register_module("k_proj", std::make_shared<Linear>(d, num_kv_heads * head_dim, cfg.attention_bias, opts));
  v_proj = register_module("v_proj", std::make_shared<Linear>(d, num_kv_heads * head_dim, cfg.attention_bias, opts));
  o_proj = register_module("o_proj", std::make_shared<Linear>(num_heads * head_dim, d, cfg.o_proj_bias(), opts));
  if (cfg.qk_norm) {
    q_norm = register_module("q_norm", std::make_shared<RMSNorm>(head_dim, cfg.rms_norm_eps, opts, cfg.gemma()));
    k_norm = register_module("k_norm", std::make_shared<RMSNorm>(head_dim, cfg.rms_norm_eps, opts, cfg.gemma()));
  }
}

struct RopeTables {
  at::Tensor cos, sin;      // [B,1,T,D/2] in the compute dtype
  int64_t window = 0;
};

at::Tensor Attention::forward(const at::Tensor& x, const RopeTables& rope, const AttentionMask& mask, bool slides,
                              KVCache* cache, int64_t layer, int64_t past) const {
  const Attention& a = *this;
  const int64_t B = x.size(0), T = x.size(1), D = a.head_dim;
  at::Tensor q = a.q_proj->forward(x).view({B, T, a.num_heads, D});
  at::Tensor k = a.k_proj->forward(x).view({B, T, a.num_kv_heads, D});
  at::Tensor v = a.v_proj->forward(x).view({B, T, a.num_kv_heads, D});
  if (q_norm) {  // over each head's D features, before RoPE
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  q = apply_rope(q, rope.cos, rope.sin);
  at::Tensor kall, vall;
  if (cache) {
    at::Tensor& kc = cache->k[layer];
    at::Tensor& vc = cache->v[layer];
    apply_rope(k, rope.cos, rope.sin, kc.narrow(2, past, T));
    vc.narrow(2, past, T).copy_(v.transpose(1, 2));
    kall = kc.narrow(2, 0, past + T);
    vall = vc.narrow(2, 0, past + T);
  } else {
    kall = apply_rope(k, rope.cos, rope.sin);
    vall = v.transpose(1, 2);
  }
  at::Tensor out = attend(q, kall, vall, mask, slides, rope.window, scale, softcap);  // [B,H,T,D]
  return a.o_proj->forward(out.transpose(1, 2).reshape({B, T, a.num_heads * D}));
}

MLP::MLP(const ModelConfig& cfg, const at::TensorOptions& opts) : gelu_tanh(cfg.hidden_act == "gelu_pytorch_tanh") {
  const int64_t d = cfg.hidden_size, f = cfg.intermediate_size;
  gate_proj = register_module("gate_proj", std::make_shared<Linear>(d, f, cfg.mlp_bias, opts));
  up_proj = register_module("up_proj", std::make_shared<Linear>(d, f, cfg.mlp_bias, opts));
  down_proj = register_module("down_proj", std::make_shared<Linear>(f, d, cfg.mlp_bias, opts));
}

at::Tensor MLP::forward(const at::Tensor& x) const {
  at::Tensor g = gate_proj->forward(x);
  at::Tensor u = up_proj->forward(x);
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
  auto norm = [&](const char* name) {
    return register_module(name, std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps, opts, cfg.gemma()));
  };
  input_layernorm = norm("input_layernorm");
  post_attention_layernorm = norm("post_attention_layernorm");
  if (cfg.gemma()) {
    pre_feedforward_layernorm = norm("pre_feedforward_layernorm");
    post_feedforward_layernorm = norm("post_feedforward_layernorm");
  }
}

DecoderModel::DecoderModel(const ModelConfig& cfg, const at::TensorOptions& opts) {
  embed_tokens = register_module("embed_tokens", std::make_shared<Embedding>(cfg.vocab_size, cfg.hidden_size, opts));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    layer_ptrs.push_back(std::make_shared<DecoderLayer>(cfg, i, opts));
    layers->push_back(layer_ptrs.back());
  }
  norm = register_module("norm", std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps, opts, cfg.gemma()));
}

// ---------------------------------------------------------------------------------------
// KV cache

KVCache::KVCache(const ModelConfig& cfg, int64_t b, int64_t max_length, const at::TensorOptions& opts)
    : batch(b), max_len(max_length) {
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    k.push_back(at::zeros({b, cfg.num_key_value_heads, max_length, cfg.head_dim}, opts));
    v.push_back(at::zeros({b, cfg.num_key_value_heads, max_length, cfg.head_dim}, opts));
  }
  valid = at::zeros({b, max_length}, opts.dtype(at::kBool));
  count = at::zeros({b}, opts.dtype(at::kLong));
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
    const double unit = cfg_.gemma() ? 0.0 : 1.0;
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

namespace {

// Masks over slots: this call's and the cache's token slots. Within a row, real tokens are
// contiguous after left padding, so slot distance equals position distance and the
// sliding window can be applied on slots as HF does. `real` ([B,T], undefined when every
// token is real) and `key_valid` ([B,S], the cache's or `real`) say which slots hold tokens.
AttentionMask make_mask(bool causal, const at::Tensor& key_valid, int64_t past, int64_t T, int64_t window,
                        at::ScalarType dt, const c10::Device& dev) {
  AttentionMask mask;
  mask.causal = causal;
  if (causal) {
    return mask;
  }
  const int64_t S = past + T;
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(dev);
  at::Tensor qs = at::arange(past, S, long_opts).unsqueeze(1);  // [T,1]
  at::Tensor ks = at::arange(0, S, long_opts).unsqueeze(0);     // [1,S]
  // A query may see earlier real keys; every query also sees itself, so that padding
  // rows (whose outputs are never used) stay finite instead of 0/0.
  at::Tensor causal_allow = (ks <= qs).unsqueeze(0);
  at::Tensor self = (ks == qs).unsqueeze(0);
  mask.allow = causal_allow.logical_and(key_valid.unsqueeze(1)).logical_or(self);
  if (window > 0) mask.allow_window = mask.allow.logical_and((qs - ks < window).unsqueeze(0)).logical_or(self);
  else mask.allow_window = mask.allow;
  return mask;
}

// cos/sin of position x inverse frequency, in fp32 (as HF), then the compute dtype.
RopeTables make_rope_tables(const at::Tensor& pos, const at::Tensor& inv_freq, int64_t window, at::ScalarType dt) {
  RopeTables r;
  r.window = window;
  at::Tensor freqs = pos.to(at::kFloat).unsqueeze(-1) * inv_freq.to(pos.device()).view({1, 1, -1});  // [B,T,D/2]
  at::Tensor cosf = freqs.cos().unsqueeze(1), sinf = freqs.sin().unsqueeze(1);                       // [B,1,T,D/2]
  r.cos = cosf.to(dt);
  r.sin = sinf.to(dt);
  return r;
}

// Training with activation checkpointing: one checkpointed block per layer
// (h -> h + attn(norm h) -> + mlp(norm .)); the block owns copies of what it reads, since
// backward runs it again later.
at::Tensor checkpointed_layers(const DecoderModel& model, at::Tensor h, const RopeTables& rope,
                               const RopeTables& rope_local, const AttentionMask& mask) {
  for (const auto& layer : model.layer_ptrs) {
    BlockFn block = [layer, r = layer->slides ? rope_local : rope, mask](const at::Tensor& hin) {
      at::Tensor a = layer->self_attn->forward(layer->input_layernorm->forward(hin), r, mask, layer->slides, nullptr,
                                               layer->index, /*past=*/0);
      at::Tensor h1 = hin + layer->attn_delta(a);
      return h1 + layer->mlp_delta(layer->mlp->forward(layer->mlp_input_norm().forward(h1)));
    };
    std::vector<at::Tensor> params = layer->parameters();
    for (const Linear* l : {layer->self_attn->q_proj.get(), layer->self_attn->k_proj.get(),
                            layer->self_attn->v_proj.get(), layer->self_attn->o_proj.get(),
                            layer->mlp->gate_proj.get(), layer->mlp->up_proj.get(), layer->mlp->down_proj.get()})
      if (l->lora_A.defined()) {
        params.push_back(l->lora_A);
        params.push_back(l->lora_B);
      }
    h = checkpointed(std::move(block), h, params);
  }
  return model.norm->forward(h);
}

// Adds a sub-block's output to the residual stream h and returns the next norm of it: one
// fused pass when no gradient is needed on CPU.
at::Tensor add_norm(at::Tensor& h, const at::Tensor& delta, const RMSNorm& norm) {
  if (fused_cpu(h) && h.is_contiguous() && delta.is_contiguous() && norm.weight.scalar_type() == at::kFloat)
    return cpu::add_rms_norm_(h, delta, norm.scale(), norm.eps);
  if (at::GradMode::is_enabled()) h = h + delta;
  else h.add_(delta);  // h is this forward's own tensor
  return norm.forward(h);
}

}  // namespace

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
  const AttentionMask mask =
      make_mask(causal, causal ? at::Tensor() : (cache ? cache->valid.narrow(1, 0, S) : real), past, T, window, dt, dev);

  const RopeTables rope = make_rope_tables(pos, inv_freq_, window, dt);
  // Gemma 3's sliding layers rotate with their own base.
  const RopeTables rope_local =
      inv_freq_local_.defined() ? make_rope_tables(pos, inv_freq_local_, window, dt) : rope;

  // Residual stream h; each sub-block reads norm(h) and adds its output back.
  at::Tensor h = model->embed_tokens->forward(ids);
  if (cfg_.gemma()) {
    // HF: embeddings * tensor(sqrt(hidden), dtype=embeddings.dtype), the factor rounded to
    // the dtype the model runs in (33.94 -> 33.75 in bf16 at hidden 1152).
    const double normalizer = at::scalar_tensor(std::sqrt(static_cast<double>(cfg_.hidden_size)), at::kDouble)
                                  .to(dt).item<double>();
    h = h * normalizer;
  }
  if (activation_checkpointing && at::GradMode::is_enabled() && !cache)
    return checkpointed_layers(*model, h, rope, rope_local, mask);
  const auto& layers = model->layer_ptrs;
  at::Tensor x = layers.empty() ? model->norm->forward(h) : layers[0]->input_layernorm->forward(h);
  for (size_t i = 0; i < layers.size(); ++i) {
    const DecoderLayer& layer = *layers[i];
    const RopeTables& r = layer.slides ? rope_local : rope;
    at::Tensor a = layer.self_attn->forward(x, r, mask, layer.slides, cache, layer.index, past);
    x = add_norm(h, layer.attn_delta(a), layer.mlp_input_norm());
    at::Tensor m = layer.mlp->forward(x);
    x = add_norm(h, layer.mlp_delta(m), i + 1 < layers.size() ? *layers[i + 1]->input_layernorm : *model->norm);
  }
  if (cache) {
    cache->count += real.defined() ? real.to(at::kLong).sum(1) : at::full({B}, T, long_opts);
    cache->length = S;
  }
  return x;
}

}  // namespace safetune::model
