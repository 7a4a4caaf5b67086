// bench forward (see forward.h).
#include "safetune/bench/forward.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include "safetune/core/log.h"
#include <torch/torch.h>

#include <memory>

#include "safetune/bench/gemm.h"
#include "safetune/core/device.h"
#include "safetune/core/error.h"
#include "safetune/model/load.h"
#include "safetune/model/transformer.h"

namespace safetune::bench {

io::ModelConfig config_25m(const std::string& arch) {
  io::ModelConfig c = io::decoder_config(arch, {32000, 512, 1376, 8, 8, 8}, "--arch");
  c.max_position_embeddings = 2048;
  c.tie_word_embeddings = true;
  return c;
}

ForwardResult bench_forward(const ForwardOptions& o) {
  if (o.model.empty() == !o.init_25m) input_error("bench forward", "give exactly one of --model and --init-25m");
  if (o.batch < 1 || o.seq < 1 || o.iters < 1 || o.warmup < 0) input_error("bench forward", "sizes must be positive");
  const c10::Device dev = resolve_device(o.device, "--device");
  std::shared_ptr<model::Transformer> m;
  if (o.init_25m) m = model::init_model(config_25m(o.arch), 0, dev);
  else m = model::load_model(o.model, dev).model;
  const auto& cfg = m->config();
  if (o.seq > cfg.max_position_embeddings)
    log::warn("--seq {} exceeds max_position_embeddings {}", o.seq, cfg.max_position_embeddings);

  // Parameter counts: matrices used as matmuls (tied embeddings count once, as the lm_head).
  ForwardResult r;
  r.params = m->num_parameters();
  for (const auto& item : m->named_parameters())
    if (item.value().dim() == 2 && item.key() != "model.embed_tokens.weight") r.params_matmul += item.value().numel();
  if (o.logits) r.params_matmul += m->lm_head ? 0 : m->lm_head_weight().numel();
  else if (m->lm_head) r.params_matmul -= m->lm_head->weight.numel();
  r.tokens = static_cast<double>(o.batch) * o.seq;
  const double attn = 4.0 * o.batch * double(o.seq) * o.seq * double(cfg.num_attention_heads * cfg.head_dim) *
                      cfg.num_hidden_layers;
  r.flops = 2.0 * r.params_matmul * r.tokens + attn;
  r.dtype = c10::toString(m->dtype());

  at::InferenceMode inference;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  at::Tensor ids = at::randint(0, cfg.vocab_size, {o.batch, o.seq}, gen, at::kLong).to(dev);
  r.seconds = best_time(o.warmup, o.iters, dev, [&] {
    at::Tensor h = m->forward(ids);
    if (o.logits) h = m->logits(h);
  });
  return r;
}

}  // namespace safetune::bench
