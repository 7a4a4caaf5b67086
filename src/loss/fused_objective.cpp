// CE + lambda x constraint from hidden states, chunked over rows (see fused_objective.h).
//
// Per chunk of rows [start, end), with z = the chunk's logits [C, V]:
//   1. from z, before it is overwritten, what the constraint needs on its valid rows in the
//      chunk (the others add nothing):
//        pact     the model's logits on S; the gate from them, and the reference it mixes
//                 (z_ref = (1 - c) z_full + c z_post on S)
//        anchor   the model's logits on S; the reference's log-probabilities on S (lr_S)
//        kl_full  the whole term: its loss, and its gradient for those rows,
//                 lambda T/n (softmax(z / T) - softmax(zr / T)), from a reference chunk zr
//   2. the row terms turn z in place into dLoss/dz:
//        CE       (softmax - onehot) / n_ce on rows with a target, 0 elsewhere
//        pact     + lambda T/n (softmax(z_S / T) sum(q) - q) on the columns S
//        anchor   with a = 2 lambda (lp_S - lr_S) / (n K): + a on the columns S and
//                 - sum(a) softmax(z) on the whole row (a coefficient on CE's softmax)
//        kl_full  + its gradient from step 1
//      either with torch ops on fp32 logits, or through the row entry points of
//      cuda/loss_dispatch.h, which are the CUDA kernels on bf16 logits (RowOps);
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
#include "safetune/cuda/loss_dispatch.h"

namespace safetune::loss {

int64_t default_chunk_tokens(int64_t vocab, bool weight_trains, bool gpu) {
  // Bytes of one fp32 [chunk x vocab] buffer: the logits, the only such buffer of CE and
  // pact (anchor holds two, kl_full three). Smaller chunks cost GEMM efficiency: on CPU at
  // V = 32000, d = 1024, 256-row chunks took 2-4% more time than 512-row ones. A trained
  // weight adds its fp32 gradient [V, d] to what the op holds, so the chunk gets less: at
  // N = 4096, V = 32000, d = 1024 that keeps CE's extra memory at 0.12 of the composed
  // ops' (0.136 with 512 rows), for ~2% more time (scripts/bench_loss.sh, --train-weight).
  // A GPU reads the whole weight once per chunk from memory that is fast but not free
  // (1 GB in bf16 at V = 128256, d = 4096), and a GEMM of 64 or 128 rows leaves most of it
  // idle: there the budget is 512 MiB (1024 rows at V = 128256; chosen, not yet measured).
  const int64_t budget = int64_t(gpu ? 512 : weight_trains ? 40 : 64) << 20;
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

// x [n, V] fp32 becomes exp(x - rowmax) in place; returns the row sums of that and the
// rows' logsumexp, both [n, 1]. This is logsumexp without its [n, V] temporary exp(x - max),
// which at one chunk of logits is as large as the chunk itself, and it leaves the
// exponentials where the softmax needs them.
struct RowExp {
  at::Tensor sum, lse;
};
RowExp exp_rows_(const at::Tensor& x) {
  const at::Tensor m = x.amax(1, /*keepdim=*/true);
  x.sub_(m).exp_();
  RowExp r;
  r.sum = x.sum(1, /*keepdim=*/true);
  r.lse = r.sum.log().add_(m);
  return r;
}

// The constraint's valid rows inside one chunk: idx (their indices into M), local (their
// rows in the chunk) and, when they are consecutive (the usual case), first = the first
// local row, so that their rows of a [C, ...] tensor are a view instead of a copy.
struct ChunkRows {
  int64_t n = 0, first = -1;
  at::Tensor idx, local;
  at::Tensor of(const at::Tensor& x) const { return first >= 0 ? x.narrow(0, first, n) : x.index_select(0, local); }
};

// kl_full on the chunk's constraint rows: adds their T^2 KL(r || p) to con_sum and returns
// its gradient for those rows times `scale`, T (p - r) scale as [n, V] fp32, where
// p = softmax(z / T) and r = softmax(zr / T). Two [n, V] buffers besides z: the reference's
// log r (later the scratch, then p and the gradient) and r. The KL is summed as
// sum r log r - sum r z / T + lse(z / T) sum r, so that log p is never stored.
at::Tensor kl_full_rows(const FusedConstraint& c, const ChunkRows& rows, const at::Tensor& z, double T, double scale,
                        at::Tensor& con_sum) {
  const at::Tensor zrow = rows.of(z);  // any float dtype, read only
  at::Tensor log_r = reference_rows(c, rows.idx).div_(T);
  const at::Tensor r = log_r.clone();
  const RowExp er = exp_rows_(r);
  r.div_(er.sum);
  log_r.sub_(er.lse);
  const at::Tensor r_log_r = log_r.mul_(r).sum(1, /*keepdim=*/true);
  const at::Tensor r_z = at::mul_out(log_r, r, zrow).sum(1, /*keepdim=*/true);
  const at::Tensor p = log_r.copy_(zrow).div_(T);
  const RowExp ep = exp_rows_(p);
  con_sum.add_(((r_log_r - r_z / T + ep.lse * r.sum(1, /*keepdim=*/true)) * (T * T)).sum().to(at::kDouble));
  return p.div_(ep.sum).sub_(r).mul_(scale * T);
}

struct FusedObjective : torch::autograd::Function<FusedObjective> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& targets, const FusedConstraint* cp, int64_t chunk,
                               int64_t ignore_index, RowOps row_ops) {
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
    // con_sum adds up the row losses (pact, kl_full: T^2 KL; anchor: sum over S of the
    // squared differences); the constraint is their mean, con_sum * con_scale, and its
    // gradient for the logits lambda * con_scale * d(row loss)/dz.
    double con_scale = 0.0;
    if (n_con > 0) con_scale = 1.0 / (double(n_con) * (kind == "anchor" ? double(K) : 1.0));
    const double grad_scale = lambda * con_scale;

    auto dopt = at::TensorOptions().dtype(at::kDouble).device(dev);
    at::Tensor ce_sum = at::zeros({}, dopt), con_sum = at::zeros({}, dopt), gate_sum = at::zeros({}, dopt);
    at::Tensor grad_h = at::zeros_like(h);
    at::Tensor grad_w = weight_grad ? at::zeros(W.sizes(), W.options().dtype(at::kFloat)) : at::Tensor();

    for (int64_t start = 0; start < N; start += chunk) {
      const int64_t end = std::min(N, start + chunk), C = end - start;
      const int64_t a = std::lower_bound(crow.begin(), crow.end(), start) - crow.begin();
      const int64_t b = std::lower_bound(crow.begin(), crow.end(), end) - crow.begin();
      if (ce_prefix[end] == ce_prefix[start] && a == b) continue;  // nothing to learn here

      const at::Tensor hc = h.slice(0, start, end);
      at::Tensor z = at::mm(hc, W.t());  // [C, V] in the weight's dtype
      // The kernels read the logits as they come out of the GEMM (bf16); the torch ops work
      // on fp32 logits whatever the storage.
      const bool dispatch =
          row_ops == RowOps::dispatch || (row_ops == RowOps::automatic && cuda::kernels_apply(z));
      if (!dispatch) z = z.to(at::kFloat);

      // 1. What the constraint needs from z before it is overwritten.
      ChunkRows rows;
      at::Tensor zS, z_ref, lr_S, g_rows;  // [n, K] fp32 on S; kl_full's [n, V] gradient
      if (b > a) {
        rows.n = b - a;
        rows.idx = cidx_t.slice(0, a, b);
        rows.local = crow_t.slice(0, a, b) - start;
        if (crow[b - 1] - crow[a] == rows.n - 1) rows.first = crow[a] - start;
        if (K > 0) zS = rows.of(z.index_select(1, S)).to(at::kFloat);
        if (kind == "pact") {
          // As pact_loss: the gate from the (detached) model logits on S mixes the contexts.
          const bool full = c.options.reference_mix == "full";
          const at::Tensor zf = c.z_full.index_select(0, rows.idx.to(c.z_full.device())).to(dev, at::kFloat);
          const at::Tensor zp =
              full ? at::Tensor() : c.z_post.index_select(0, rows.idx.to(c.z_post.device())).to(dev, at::kFloat);
          const at::Tensor gate = gate_values(zS, zp, tt.index_select(0, rows.idx), c.options);
          gate_sum.add_(gate.sum().to(at::kDouble));
          z_ref = full ? zf : (1 - gate).unsqueeze(1) * zf + gate.unsqueeze(1) * zp;
        } else if (kind == "anchor") {
          const at::Tensor zr = reference_rows(c, rows.idx);  // scratch for its exponentials
          const at::Tensor zr_S = zr.index_select(1, S);
          lr_S = zr_S - exp_rows_(zr).lse;
        } else if (kind == "kl_full") {
          g_rows = kl_full_rows(c, rows, z, T, grad_scale, con_sum);
        }
      }

      // 2. The row terms: z becomes dLoss/dz.
      const at::Tensor tgt = tg.slice(0, start, end);
      const at::Tensor vf = ce_valid.slice(0, start, end).to(at::kFloat).unsqueeze(1);  // [C, 1]: has a target
      if (!dispatch) {
        // In place on fp32 z, no [C, V] temporary, one exp per logit: z turns into
        // exp(z - max), then into softmax(z) times each row's coefficient, to which the
        // sparse parts are added.
        const at::Tensor tc = tgt.clamp_min(0).unsqueeze(1);  // ignored rows: any id, weight 0
        const at::Tensor z_t = z.gather(1, tc);
        const RowExp e = exp_rows_(z);
        ce_sum.add_(((e.lse - z_t) * vf).sum().to(at::kDouble));
        at::Tensor coef = vf * ce_scale;  // [C, 1] on softmax(z)
        at::Tensor g_cols;                // [n, K] on the columns S
        if (kind == "pact" && rows.n > 0) {
          at::Tensor q = at::softmax(z_ref / T, -1) * w.unsqueeze(0);
          q = q / q.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
          const at::Tensor log_p = at::log_softmax(zS / T, -1);
          con_sum.add_(((at::xlogy(q, q) - q * log_p).sum() * (T * T)).to(at::kDouble));
          // d/dzS of T^2 KL = T (softmax(zS / T) sum(q) - q).
          g_cols = (log_p.exp() * q.sum(-1, /*keepdim=*/true) - q).mul_(grad_scale * T);
        } else if (kind == "anchor" && rows.n > 0) {
          const at::Tensor diff = zS - rows.of(e.lse) - lr_S;  // lp_S - lr_S
          con_sum.add_(diff.pow(2).sum().to(at::kDouble));
          g_cols = diff * (2.0 * grad_scale);
          coef.index_add_(0, rows.local, -g_cols.sum(1, /*keepdim=*/true));
        }
        z.mul_(coef / e.sum);
        z.scatter_add_(1, tc, vf * -ce_scale);
        if (g_cols.defined()) z.index_put_({rows.local.unsqueeze(1), S.unsqueeze(0)}, g_cols, /*accumulate=*/true);
      } else {
        // The same through cuda/loss_dispatch.h, in the order of loss_kernels.h. Its entry
        // points take all C rows, the constraint's as a mask, so no row of z is copied.
        const auto f32 = z.options().dtype(at::kFloat);
        cuda::SubsetTermResult con;
        at::Tensor lse;  // anchor: the rows' logsumexp, read once and used twice
        if (rows.n > 0 && (kind == "pact" || kind == "anchor")) {
          const at::Tensor mask = at::zeros({C}, f32.dtype(at::kBool)).index_fill_(0, rows.local, true);
          auto all_rows = [&](const at::Tensor& x) { return at::zeros({C, K}, f32).index_copy_(0, rows.local, x); };
          if (kind == "pact") {
            con = cuda::subset_kl_rows(z, S, all_rows(z_ref), w, mask, T, grad_scale);
          } else {
            lse = cuda::cross_entropy_rows_(z, tgt, ce_scale, ignore_index, {}, {}, /*write_grad=*/false).lse;
            con = cuda::anchor_rows(z, S, lse, all_rows(lr_S), mask, grad_scale);
          }
          con_sum.add_(con.losses.sum().to(at::kDouble));
        }
        const auto ce = cuda::cross_entropy_rows_(z, tgt, ce_scale, ignore_index, lse, con.row_coef);
        ce_sum.add_(ce.losses.sum().to(at::kDouble));
        if (con.grad.defined()) cuda::add_subset_grad_(z, S, con.grad);
      }
      if (g_rows.defined()) {  // kl_full, either way
        if (rows.first >= 0) z.narrow(0, rows.first, rows.n).add_(g_rows);
        else z.index_add_(0, rows.local, g_rows.to(z.scalar_type()));
      }
      g_rows = at::Tensor();

      // 3. Back through the lm_head, the first GEMM straight into grad_hidden's rows. A bf16
      // z is widened for grad_W, which accumulates over the chunks in fp32.
      at::Tensor grad_hc = grad_h.slice(0, start, end);
      at::mm_out(grad_hc, z.to(W.scalar_type()), W);
      if (weight_grad) grad_w.addmm_(z.t().to(at::kFloat), hc.to(at::kFloat));
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
    // One entry per argument of forward: hidden, weight, then five without a gradient.
    return {grad_h, grad_w, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

ObjectiveValues fused_objective(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                const FusedConstraint& c, const FusedObjectiveOptions& options) {
  check_inputs(hidden, weight, targets, c);
  TORCH_CHECK(options.chunk_tokens >= 0, "fused_objective: chunk_tokens must be >= 0");
  const int64_t chunk = options.chunk_tokens > 0 ? options.chunk_tokens : default_chunk_tokens(weight.size(0), weight.requires_grad(), weight.is_cuda());
  variable_list out =
      FusedObjective::apply(hidden, weight, targets, &c, chunk, options.ignore_index, options.row_ops);
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
