// Attention: RoPE, masks, the attention kernel (SDPA, or explicit scores where Gemma 2's
// soft-capping needs them), and the attention module with its KV cache.
//
// Attention is at::scaled_dot_product_attention (fused kernels on CPU and CUDA), except with
// Gemma 2's attention soft-capping, which SDPA cannot express: there the scores are formed
// explicitly, as HF's eager attention does. RoPE runs as a fused CPU kernel (cpu_kernels.h)
// writing straight into the [B, heads, T, D] layout (for keys: into the KV cache) when no
// gradient is needed on CPU in fp32.
#include "safetune/model/attention.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "safetune/model/cpu_kernels.h"

namespace safetune::model {

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

AttentionMask make_mask(bool causal, const at::Tensor& key_valid, int64_t past, int64_t T, int64_t window,
                        const c10::Device& dev) {
  AttentionMask mask;
  mask.causal = causal;
  if (causal) return mask;
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

RopeTables make_rope_tables(const at::Tensor& pos, const at::Tensor& inv_freq, int64_t window, at::ScalarType dt) {
  RopeTables r;
  r.window = window;
  at::Tensor freqs = pos.to(at::kFloat).unsqueeze(-1) * inv_freq.to(pos.device()).view({1, 1, -1});  // [B,T,D/2]
  at::Tensor cosf = freqs.cos().unsqueeze(1), sinf = freqs.sin().unsqueeze(1);                       // [B,1,T,D/2]
  r.cos = cosf.to(dt);
  r.sin = sinf.to(dt);
  return r;
}

// ---------------------------------------------------------------------------------------
// The attention module

Attention::Attention(const ModelConfig& cfg, const at::TensorOptions& opts)
    : num_heads(cfg.num_attention_heads),
      num_kv_heads(cfg.num_key_value_heads),
      head_dim(cfg.head_dim),
      scale(cfg.attention_scale()),
      softcap(cfg.attn_logit_softcapping.value_or(0.0)) {
  const int64_t d = cfg.hidden_size, q_out = num_heads * head_dim, kv_out = num_kv_heads * head_dim;
  const io::FamilyTraits& f = cfg.traits();
  if (f.fused_qkv) {
    qkv_proj = register_module("qkv_proj", std::make_shared<Linear>(d, q_out + 2 * kv_out, cfg.attention_bias, opts));
  } else {
    q_proj = register_module("q_proj", std::make_shared<Linear>(d, q_out, cfg.attention_bias, opts));
    k_proj = register_module("k_proj", std::make_shared<Linear>(d, kv_out, cfg.attention_bias, opts));
    v_proj = register_module("v_proj", std::make_shared<Linear>(d, kv_out, cfg.attention_bias, opts));
  }
  o_proj = register_module("o_proj", std::make_shared<Linear>(q_out, d, cfg.o_proj_bias(), opts));
  if (cfg.qk_norm) {
    q_norm = register_module("q_norm", std::make_shared<RMSNorm>(head_dim, cfg.rms_norm_eps, opts, f.gemma_layout));
    k_norm = register_module("k_norm", std::make_shared<RMSNorm>(head_dim, cfg.rms_norm_eps, opts, f.gemma_layout));
  }
}

at::Tensor Attention::forward(const at::Tensor& x, const RopeTables& rope, const AttentionMask& mask, bool slides,
                              KVCache* cache, int64_t layer, int64_t past) const {
  const Attention& a = *this;
  const int64_t B = x.size(0), T = x.size(1), D = a.head_dim;
  at::Tensor q, k, v;
  if (qkv_proj) {  // HF's Phi-3: qkv[..., :H*D], then Hkv*D for k, the rest v
    const at::Tensor qkv = qkv_proj->forward(x);
    const int64_t q_out = a.num_heads * D, kv_out = a.num_kv_heads * D;
    q = qkv.narrow(-1, 0, q_out).view({B, T, a.num_heads, D});
    k = qkv.narrow(-1, q_out, kv_out).view({B, T, a.num_kv_heads, D});
    v = qkv.narrow(-1, q_out + kv_out, kv_out).view({B, T, a.num_kv_heads, D});
  } else {
    q = a.q_proj->forward(x).view({B, T, a.num_heads, D});
    k = a.k_proj->forward(x).view({B, T, a.num_kv_heads, D});
    v = a.v_proj->forward(x).view({B, T, a.num_kv_heads, D});
  }
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

}  // namespace safetune::model
