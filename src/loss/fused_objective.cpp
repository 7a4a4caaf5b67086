// CE + lambda x constraint from hidden states, chunked over rows (see fused_objective.h).
//
// Per chunk of rows [start, end), with z = the chunk's fp32 logits [C, V]:
//   1. the constraint's rows in the chunk (valid ones only: the others add nothing) take
//      their loss and their gradient for z from z itself, before z is overwritten:
//        pact     z[:, S] -> gate, q, KL on S; d/dz[:, S] = T/n (softmax(z_S / T) sum(q) - q)
//        kl_full  reference chunk zr; d/dz = T/n (softmax(z / T) - softmax(zr / T))
//        anchor   reference chunk zr; with a = 2 (lp_S - lr_S) / (n K):
//                 d/dz = a on the columns S - softmax(z) sum(a)
//   2. CE turns z in place into its gradient, (softmax - onehot) / n_ce on rows with a
//      target, 0 elsewhere; the constraint's gradient, times lambda, is added on its rows;
//   3. grad_hidden[start:end] = G W, grad_W += G^T hidden[start:end].
// The reference's rows for kl_full and anchor are computed chunk by chunk as well, from
// its hidden states and lm_head weight, so neither model's [N, V] logits ever exist.
#include "safetune/loss/fused_objective.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "safetune/core/error.h"

namespace safetune::loss {

int64_t default_chunk_tokens(int64_t vocab) {
  // Bytes of one fp32 [chunk x vocab] buffer. Smaller chunks save little more (a few such
  // buffers are alive at once) but cost GEMM efficiency: on CPU, at V = 32000, d = 1024,
  // 262-row chunks took ~20% more time than 512-row ones, which match whole-matrix GEMMs.
  const int64_t budget = int64_t(64) << 20;
  int64_t rows = budget / (4 * std::max<int64_t>(vocab, 1));
  if (rows >= 64) rows -= rows % 64;  // whole GEMM blocks
  return std::clamp<int64_t>(rows, 16, 4096);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool is_full_vocab(const std::string& kind) { return kind == "kl_full" || kind == "anchor"; }

void check_inputs(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& targets, const FusedConstraint& c) {
  TORCH_CHECK(h.dim() == 2 && weight.dim() == 2 && h.size(1) == weight.size(1),
              "fused_objective: expected hidden [N, d] and weight [V, d]");
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == h.size(0), "fused_objective: targets must be [N]");
  if (c.kind == "none") return;
  TORCH_CHECK(c.kind == "pact" || is_full_vocab(c.kind), "fused_objective: unknown constraint '", c.kind, "'");
  TORCH_CHECK(std::isfinite(c.lambda), "fused_objective: lambda must be finite");
  TORCH_CHECK(c.rows.dim() == 1 && c.valid.dim() == 1 && c.valid.size(0) == c.rows.size(0),
              "fused_objective: rows and valid must be [M]");
  const int64_t M = c.rows.size(0);
  if (c.kind == "pact" || c.kind == "anchor")
    TORCH_CHECK(c.S.dim() == 1 && c.S.numel() > 0, "fused_objective: ", c.kind, " needs the columns S [K]");
  if (c.kind == "pact") {
    const int64_t K = c.S.numel();
    TORCH_CHECK(c.w.dim() == 1 && c.w.size(0) == K, "fused_objective: w must be [K]");
    TORCH_CHECK(c.t.dim() == 1 && c.t.size(0) == M, "fused_objective: t must be [M]");
    TORCH_CHECK(c.z_full.dim() == 2 && c.z_full.size(0) == M && c.z_full.size(1) == K,
                "fused_objective: z_full must be [M, K]");
    if (c.options.reference_mix != "full")
      TORCH_CHECK(c.z_post.defined() && c.z_post.sizes() == c.z_full.sizes(), "fused_objective: z_post must be [M, K]");
  } else if (is_full_vocab(c.kind)) {
    if (c.ref_hidden.defined()) {
      TORCH_CHECK(c.ref_hidden.dim() == 2 && c.ref_hidden.size(0) == M && c.ref_weight.dim() == 2 &&
                      c.ref_weight.size(0) == weight.size(0) && c.ref_weight.size(1) == c.ref_hidden.size(1),
                  "fused_objective: expected ref_hidden [M, d] and ref_weight [V, d]");
    } else {
      TORCH_CHECK(c.ref_logits.defined() && c.ref_logits.dim() == 2 && c.ref_logits.size(0) == M &&
                      c.ref_logits.size(1) == weight.size(0),
                  "fused_objective: ", c.kind, " needs ref_hidden + ref_weight or ref_logits [M, V]");
    }
  }
}

// The reference's fp32 logits at constraint rows `ci` (indices into M).
at::Tensor reference_rows(const FusedConstraint& c, const at::Tensor& ci) {
  if (c.ref_hidden.defined())
    return at::mm(c.ref_hidden.index_select(0, ci.to(c.ref_hidden.device())), c.ref_weight.t()).to(at::kFloat);
  return c.ref_logits.index_select(0, ci.to(c.ref_logits.device())).to(at::kFloat);
}

struct FusedObjective : torch::autograd::Function<FusedObjective> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& targets, const FusedConstraint* cp, int64_t chunk,
                               int64_t ignore_index) {
    at::NoGradGuard no_grad;
    const FusedConstraint& c = *cp;
    const at::Tensor h = hidden.detach();
    const at::Tensor W = weight.detach();
    const int64_t N = h.size(0);
    const auto dev = h.device();
    const bool weight_grad = weight.requires_grad();
    const std::string& kind = c.kind;
    const bool constrained = kind != "none";
    const double T = c.options.temperature, lambda = constrained ? c.lambda : 0.0;

    // Row bookkeeping on the CPU: which targets count, and the valid constraint rows
    // (cidx: index into M; crow: hidden row), increasing, so each chunk owns a range.
    const at::Tensor tg = targets.to(dev, at::kLong);
    const at::Tensor ce_valid = tg.ne(ignore_index);
    const at::Tensor ce_valid_cpu = ce_valid.cpu();
    const bool* cev = ce_valid_cpu.data_ptr<bool>();
    std::vector<int64_t> ce_prefix(N + 1, 0);  // ce_prefix[i] = targets among rows < i
    for (int64_t i = 0; i < N; ++i) ce_prefix[i + 1] = ce_prefix[i] + (cev[i] ? 1 : 0);
    const int64_t n_ce = ce_prefix[N];
    std::vector<int64_t> cidx, crow;
    if (constrained) {
      const at::Tensor rows = c.rows.to(at::kCPU, at::kLong).contiguous();
      const at::Tensor valid = c.valid.to(at::kCPU, at::kBool).contiguous();
      const int64_t* r = rows.data_ptr<int64_t>();
      const bool* v = valid.data_ptr<bool>();
      for (int64_t m = 0; m < rows.numel(); ++m) {
        TORCH_CHECK(r[m] >= 0 && r[m] < N && (m == 0 || r[m] > r[m - 1]),
                    "fused_objective: rows must be strictly increasing indices into the hidden rows");
        if (v[m]) cidx.push_back(m), crow.push_back(r[m]);
      }
    }
    const int64_t n_con = static_cast<int64_t>(cidx.size());
    const at::Tensor cidx_t = at::tensor(cidx, at::kLong).to(dev), crow_t = at::tensor(crow, at::kLong).to(dev);
    const int64_t K = c.S.defined() ? c.S.numel() : 0;
    const at::Tensor S = c.S.defined() ? c.S.to(dev, at::kLong) : at::Tensor();
    const at::Tensor w = kind == "pact" ? c.w.to(dev, at::kFloat) : at::Tensor();
    const at::Tensor tt = kind == "pact" ? c.t.to(dev, at::kLong) : at::Tensor();

    const double ce_scale = n_ce > 0 ? 1.0 / double(n_ce) : 0.0;
    // The constraint's value is con_sum * con_scale; its gradient for the logits is
    // lambda * con_scale * d(con_sum)/dz, folded into the per-row formulas below.
    double con_scale = 0.0;
    if (n_con > 0) con_scale = kind == "anchor" ? 1.0 / (double(n_con) * double(K)) : T * T / double(n_con);

    auto dopt = at::TensorOptions().dtype(at::kDouble).device(dev);
    at::Tensor ce_sum = at::zeros({}, dopt), con_sum = at::zeros({}, dopt), gate_sum = at::zeros({}, dopt);
    at::Tensor grad_h = at::zeros_like(h);
    at::Tensor grad_w = weight_grad ? at::zeros(W.sizes(), W.options().dtype(at::kFloat)) : at::Tensor();

    for (int64_t start = 0; start < N; start += chunk) {
      const int64_t end = std::min(N, start + chunk);
      const int64_t a = std::lower_bound(crow.begin(), crow.end(), start) - crow.begin();
      const int64_t b = std::lower_bound(crow.begin(), crow.end(), end) - crow.begin();
      if (ce_prefix[end] == ce_prefix[start] && a == b) continue;  // nothing to learn here

      const at::Tensor hc = h.slice(0, start, end);
      at::Tensor z = at::mm(hc, W.t()).to(at::kFloat);  // [C, V], fp32 whatever the storage
      const at::Tensor lse = z.logsumexp(1, /*keepdim=*/true);

      // 1. The constraint on its rows of this chunk: loss and gradient for those rows.
      const int64_t nc = b - a;
      at::Tensor ci, rl;          // constraint indices, local rows
      int64_t r0 = -1;            // first local row when the rows are contiguous (the usual case)
      at::Tensor g_cols, g_rows;  // gradient on [rows, S] (pact, anchor) / [rows, V] (kl_full, anchor)
      if (nc > 0) {
        ci = cidx_t.slice(0, a, b);
        rl = crow_t.slice(0, a, b) - start;
        if (crow[b - 1] - crow[a] == nc - 1) r0 = crow[a] - start;
        const at::Tensor zrow = r0 >= 0 ? z.narrow(0, r0, nc) : z.index_select(0, rl);
        if (kind == "pact") {
          // As pact_loss: gate from the detached logits on S, mix, weighted target q.
          const at::Tensor zt = zrow.index_select(1, S);
          const at::Tensor zf = c.z_full.index_select(0, ci.to(c.z_full.device())).to(dev, at::kFloat);
          const bool full = c.options.reference_mix == "full";
          const at::Tensor zp =
              full ? at::Tensor() : c.z_post.index_select(0, ci.to(c.z_post.device())).to(dev, at::kFloat);
          const at::Tensor gate = gate_values(zt, zp, tt.index_select(0, ci), c.options);
          const at::Tensor z_mix = full ? zf : (1 - gate).unsqueeze(1) * zf + gate.unsqueeze(1) * zp;
          at::Tensor q = at::softmax(z_mix / T, -1) * w.unsqueeze(0);
          q = q / q.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
          const at::Tensor log_p = at::log_softmax(zt / T, -1);
          con_sum.add_((at::xlogy(q, q) - q * log_p).sum().to(at::kDouble));
          gate_sum.add_(gate.sum().to(at::kDouble));
          // d/dzt of -sum_j q_j log_p_j = (softmax(zt / T) sum(q) - q) / T; times T^2 / n.
          g_cols = (log_p.exp() * q.sum(-1, /*keepdim=*/true) - q).mul_(lambda * T / double(n_con));
        } else if (kind == "kl_full") {
          at::Tensor log_r = reference_rows(c, ci).div_(T);  // [nc, V]
          log_r.sub_(log_r.logsumexp(1, /*keepdim=*/true));
          at::Tensor p = zrow / T;  // becomes log p, then p, then the gradient
          const at::Tensor lse_p = p.logsumexp(1, /*keepdim=*/true);
          p.sub_(lse_p);
          const at::Tensor r = log_r.exp();
          // sum_j r_j (log r_j - log p_j), with p's buffer as scratch.
          p.neg_().add_(log_r).mul_(r);
          con_sum.add_(p.sum().to(at::kDouble));
          log_r = at::Tensor();
          p.copy_(zrow).div_(T).sub_(lse_p).exp_();
          g_rows = p.sub_(r).mul_(lambda * T / double(n_con));
        } else if (kind == "anchor") {
          at::Tensor zr = reference_rows(c, ci);
          const at::Tensor lr_S = zr.index_select(1, S) - zr.logsumexp(1, /*keepdim=*/true);
          zr = at::Tensor();
          const at::Tensor lse_z = r0 >= 0 ? lse.narrow(0, r0, nc) : lse.index_select(0, rl);
          const at::Tensor diff = zrow.index_select(1, S) - lse_z - lr_S;  // [nc, K]
          con_sum.add_(diff.pow(2).sum().to(at::kDouble));
          const at::Tensor ag = diff * (2.0 * lambda * con_scale);  // lambda x d/d(lp_S)
          g_rows = (zrow - lse_z).exp_().mul_(-ag.sum(1, /*keepdim=*/true));
          g_cols = ag;
        }
      }

      // 2. CE in place: z becomes (softmax - onehot) * [has target] / n_ce.
      const at::Tensor tc = tg.slice(0, start, end).clamp_min(0).unsqueeze(1);  // ignored rows: any id
      const at::Tensor vf = ce_valid.slice(0, start, end).to(at::kFloat).unsqueeze(1);
      ce_sum.add_(((lse - z.gather(1, tc)) * vf).sum().to(at::kDouble));
      z.sub_(lse).exp_();
      z.scatter_add_(1, tc, at::full_like(vf, -1.0));
      z.mul_(vf * ce_scale);
      // ... plus the constraint's gradient on its rows.
      if (g_rows.defined()) {
        if (r0 >= 0) z.narrow(0, r0, nc).add_(g_rows);
        else z.index_add_(0, rl, g_rows);
      }
      if (g_cols.defined()) z.index_put_({rl.unsqueeze(1), S.unsqueeze(0)}, g_cols, /*accumulate=*/true);
      g_rows = g_cols = at::Tensor();

      // 3. Back through the lm_head.
      grad_h.slice(0, start, end).copy_(at::mm(z.to(W.scalar_type()), W));
      if (weight_grad) grad_w.addmm_(z.t(), hc.to(at::kFloat));
    }

    const at::Tensor ce = (ce_sum * ce_scale).to(at::kFloat);
    const at::Tensor con = (con_sum * con_scale).to(at::kFloat);
    const at::Tensor gate = (n_con > 0 ? gate_sum / double(n_con) : gate_sum).to(at::kFloat);
    const at::Tensor total = ce + con * lambda;
    ctx->saved_data["grad_h"] = grad_h;
    ctx->saved_data["grad_w"] = weight_grad ? grad_w.to(W.scalar_type()) : at::Tensor();
    ctx->mark_non_differentiable({ce, con, gate});
    return {total, ce, con, gate};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    // The stored gradients are handed over and scaled in place: a [V, d] grad_W is the
    // largest buffer of the op, and a scaled copy of it would double the peak. So the
    // gradients can be taken once (no retain_graph over this op).
    TORCH_CHECK(!ctx->saved_data["grad_h"].isNone(),
                "fused_objective: backward ran twice through the same graph (retain_graph is not supported)");
    at::Tensor grad_h = ctx->saved_data["grad_h"].toTensor();
    at::Tensor grad_w = ctx->saved_data["grad_w"].toTensor();
    ctx->saved_data["grad_h"] = c10::IValue();
    ctx->saved_data["grad_w"] = c10::IValue();
    const at::Tensor g = grad_out[0];
    if (g.defined()) {
      grad_h.mul_(g.to(grad_h.scalar_type()));
      if (grad_w.defined()) grad_w.mul_(g.to(grad_w.scalar_type()));
    }
    return {grad_h, grad_w, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

ObjectiveValues fused_objective(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                const FusedConstraint& c, const FusedObjectiveOptions& options) {
  check_inputs(hidden, weight, targets, c);
  TORCH_CHECK(options.chunk_tokens >= 0, "fused_objective: chunk_tokens must be >= 0");
  const int64_t chunk = options.chunk_tokens > 0 ? options.chunk_tokens : default_chunk_tokens(weight.size(0));
  variable_list out = FusedObjective::apply(hidden, weight, targets, &c, chunk, options.ignore_index);
  return {out[0], out[1], out[2], out[3]};
}

ObjectiveValues unfused_objective(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                  const FusedConstraint& c, int64_t ignore_index) {
  check_inputs(hidden, weight, targets, c);
  const auto dev = hidden.device();
  const auto fopt = at::TensorOptions().dtype(at::kFloat).device(dev);
  ObjectiveValues v;
  v.constraint = at::zeros({}, fopt);
  v.gate_mean = at::zeros({}, fopt);
  const at::Tensor valid = c.kind == "none" ? at::Tensor() : c.valid.to(dev, at::kBool);
  const at::Tensor rows = c.kind == "none" ? at::Tensor() : c.rows.to(dev, at::kLong);
  if (is_full_vocab(c.kind)) {
    // One [N, V] logits tensor serves both terms; the reference's [M, V] logits too.
    const at::Tensor logits = at::matmul(hidden, weight.t()).to(at::kFloat);
    if (targets.ne(ignore_index).sum().item<int64_t>() == 0) v.ce = logits.sum() * 0.0;
    else v.ce = at::cross_entropy_loss(logits, targets, {}, at::Reduction::Mean, ignore_index);
    at::Tensor ref;
    {
      at::NoGradGuard no_grad;
      ref = c.ref_hidden.defined() ? at::matmul(c.ref_hidden, c.ref_weight.t()).to(at::kFloat)
                                   : c.ref_logits.to(dev, at::kFloat);
    }
    const at::Tensor lt = logits.index_select(0, rows);
    v.constraint = c.kind == "kl_full" ? kl_full_loss(lt, ref, valid, c.options.temperature)
                                       : anchor_loss(lt, ref, c.S.to(dev), valid);
  } else {
    v.ce = linear_cross_entropy(hidden, weight, targets, ignore_index);
    if (c.kind == "pact") {
      const at::Tensor WS = weight.index_select(0, c.S.to(dev, at::kLong));
      const at::Tensor z_theta = at::matmul(hidden.index_select(0, rows), WS.t());
      ConstraintResult r = pact_loss(z_theta, c.z_full.to(dev), c.z_post.defined() ? c.z_post.to(dev) : at::Tensor(),
                                     c.w.to(dev), c.t.to(dev), valid, c.options);
      v.constraint = r.loss;
      v.gate_mean = r.gate_mean;
    }
  }
  v.total = c.kind == "none" ? v.ce : v.ce + c.lambda * v.constraint;
  return v;
}

}  // namespace safetune::loss
