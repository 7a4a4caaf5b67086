#include "safetune/loss/cross_entropy.h"

#include <torch/torch.h>

namespace safetune::loss {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FusedLinearCrossEntropy : torch::autograd::Function<FusedLinearCrossEntropy> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& targets, int64_t chunk_tokens, int64_t ignore_index) {
    at::NoGradGuard no_grad;
    const int64_t d = hidden.size(-1);
    const at::Tensor h = hidden.reshape({-1, d});
    const at::Tensor t = targets.reshape({-1});
    TORCH_CHECK(h.size(0) == t.size(0), "fused_linear_cross_entropy: ", h.size(0), " hidden rows vs ",
                t.size(0), " targets");
    const int64_t n = h.size(0);
    const bool weight_grad = weight.requires_grad();

    const at::Tensor valid = t.ne(ignore_index);
    const int64_t n_valid = valid.sum().item<int64_t>();
    at::Tensor grad_h = at::zeros_like(h);
    at::Tensor grad_w = weight_grad ? at::zeros_like(weight, weight.options().dtype(at::kFloat)) : at::Tensor();
    at::Tensor loss_sum = at::zeros({}, h.options().dtype(at::kFloat));

    if (n_valid > 0) {
      const double inv_n = 1.0 / static_cast<double>(n_valid);
      for (int64_t start = 0; start < n; start += chunk_tokens) {
        const int64_t end = std::min(n, start + chunk_tokens);
        const at::Tensor hc = h.slice(0, start, end);
        const at::Tensor vc = valid.slice(0, start, end);
        const at::Tensor tc = t.slice(0, start, end).clamp_min(0).unsqueeze(1);  // ignored rows: any id
        // Logits in fp32 whatever the storage dtype (bf16 on GPU).
        at::Tensor z = at::mm(hc, weight.t()).to(at::kFloat);
        const at::Tensor lse = z.logsumexp(1, /*keepdim=*/true);
        const at::Tensor vf = vc.to(at::kFloat).unsqueeze(1);
        loss_sum.add_(((lse - z.gather(1, tc)) * vf).sum());
        // z becomes dloss/dz = (softmax - onehot) * valid / n_valid, in place.
        z.sub_(lse).exp_();
        z.scatter_add_(1, tc, at::full_like(vf, -1.0));
        z.mul_(vf * inv_n);
        const at::Tensor g = z.to(weight.scalar_type());
        grad_h.slice(0, start, end).copy_(at::mm(g, weight));
        if (weight_grad) grad_w.addmm_(z.t(), hc.to(at::kFloat));
      }
      loss_sum.mul_(inv_n);
    }
    ctx->saved_data["grad_h"] = grad_h.view(hidden.sizes());
    ctx->saved_data["grad_w"] = weight_grad ? grad_w.to(weight.scalar_type()) : at::Tensor();
    return loss_sum;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const at::Tensor g = grad_out[0];
    at::Tensor grad_h = ctx->saved_data["grad_h"].toTensor() * g.to(hidden_dtype(ctx));
    at::Tensor grad_w = ctx->saved_data["grad_w"].toTensor();
    if (grad_w.defined()) grad_w = grad_w * g.to(grad_w.scalar_type());
    return {grad_h, grad_w, at::Tensor(), at::Tensor(), at::Tensor()};
  }

  static at::ScalarType hidden_dtype(AutogradContext* ctx) {
    return ctx->saved_data["grad_h"].toTensor().scalar_type();
  }
};

}  // namespace

at::Tensor fused_linear_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                      const CrossEntropyOptions& options) {
  TORCH_CHECK(options.chunk_tokens > 0, "chunk_tokens must be positive");
  return FusedLinearCrossEntropy::apply(hidden, weight, targets, options.chunk_tokens, options.ignore_index);
}

at::Tensor linear_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                int64_t ignore_index) {
  const at::Tensor logits = at::matmul(hidden, weight.t()).to(at::kFloat);
  const at::Tensor t = targets.reshape({-1});
  if (t.ne(ignore_index).sum().item<int64_t>() == 0) return (logits.sum() * 0.0);
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), t, {}, at::Reduction::Mean, ignore_index);
}

}  // namespace safetune::loss
