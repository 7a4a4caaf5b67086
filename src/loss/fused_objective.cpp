// CE + lambda x constraint from hidden states, chunked over rows (see fused_objective.h).
//
// Per chunk of rows [start, end), with z = the chunk's logits [C, V]:
//   1. from z, before it is overwritten, what the constraint needs on its valid rows in the
//      chunk (its row operations' prepare; the other rows add nothing);
//   2. the row terms turn z in place into dLoss/dz: CE's (softmax - onehot) / n_ce on rows
//      with a target, plus the constraint's dense part (a coefficient per row on CE's
//      softmax) and its sparse part on the columns S (torch_terms), either with torch ops
//      on fp32 logits, or through the row entry points of cuda/loss_dispatch.h, which are
//      the CUDA kernels on bf16 logits (dispatch_terms; RowOps);
//   3. grad_hidden[start:end] = G W, grad_W += G^T hidden[start:end].
// What each constraint does in steps 1 and 2 is its table in rows_<kind>.cpp (row_ops.h).
// Reference rows over the whole vocabulary (kl_full, anchor) are computed chunk by chunk as
// well, from its hidden states and lm_head weight, so neither model's [N, V] logits exist.
#include "safetune/loss/fused_objective.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "row_ops.h"
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
using namespace rows;

void check_inputs(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& targets, const ObjectiveSpec& s,
                  const ConstraintInputs& c) {
  TORCH_CHECK(h.dim() == 2 && weight.dim() == 2 && h.size(1) == weight.size(1),
              "fused_objective: expected hidden [N, d] and weight [V, d]");
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == h.size(0), "fused_objective: targets must be [N]");
  if (s.kind == ConstraintKind::none) return;
  TORCH_CHECK(std::isfinite(s.lambda), "fused_objective: lambda must be finite");
  TORCH_CHECK(c.rows.dim() == 1 && c.valid.dim() == 1 && c.valid.size(0) == c.rows.size(0),
              "fused_objective: rows and valid must be [M]");
  if (descriptor_of(s.kind).needs_tokens)
    TORCH_CHECK(s.S.dim() == 1 && s.S.numel() > 0, "fused_objective: ", name_of(s.kind), " needs the columns S [K]");
  row_ops_of(s.kind).check(s, c, c.rows.size(0), weight.size(0));
}

Plan make_plan(const at::Tensor& targets, const ObjectiveSpec& s, const ConstraintInputs& c, int64_t N,
               int64_t ignore_index, const c10::Device& dev) {
  Plan p;
  p.kind = s.kind;
  const bool constrained = s.kind != ConstraintKind::none;
  const ConstraintDescriptor& desc = descriptor_of(s.kind);
  p.T = s.options.temperature;
  p.softcap = s.logit_softcap;
  p.lambda = constrained ? s.lambda : 0.0;
  p.tg = targets.to(dev, at::kLong);
  p.ce_valid = p.tg.ne(ignore_index);
  const at::Tensor ce_valid_cpu = p.ce_valid.cpu();
  const bool* cev = ce_valid_cpu.data_ptr<bool>();
  p.ce_prefix.assign(N + 1, 0);
  for (int64_t i = 0; i < N; ++i) p.ce_prefix[i + 1] = p.ce_prefix[i] + (cev[i] ? 1 : 0);
  p.n_ce = p.ce_prefix[N];
  if (constrained) {
    const at::Tensor rows = c.rows.to(at::kCPU, at::kLong).contiguous();
    const at::Tensor valid = c.valid.to(at::kCPU, at::kBool).contiguous();
    const int64_t* r = rows.data_ptr<int64_t>();
    const bool* v = valid.data_ptr<bool>();
    for (int64_t m = 0; m < rows.numel(); ++m) {
      TORCH_CHECK(r[m] >= 0 && r[m] < N && (m == 0 || r[m] > r[m - 1]),
                  "fused_objective: rows must be strictly increasing indices into the hidden rows");
      if (v[m]) p.cidx.push_back(m), p.crow.push_back(r[m]);
    }
  }
  p.n_con = static_cast<int64_t>(p.cidx.size());
  p.cidx_t = at::tensor(p.cidx, at::kLong).to(dev);
  p.crow_t = at::tensor(p.crow, at::kLong).to(dev);
  p.K = s.S.defined() ? s.S.numel() : 0;
  if (s.S.defined()) p.S = s.S.to(dev, at::kLong);
  if (desc.uses_token_weights) p.w = s.w.to(dev, at::kFloat);
  if (desc.mixes_post_context && s.options.reference_mix != ReferenceMix::full) p.tt = c.t.to(dev, at::kLong);
  p.ce_scale = p.n_ce > 0 ? 1.0 / double(p.n_ce) : 0.0;
  // The mean's count: the constrained rows, or every response row given; anchor's also
  // over S's columns.
  const int64_t n_mean = desc.normalise_by_all_rows && constrained ? c.rows.numel() : p.n_con;
  if (p.n_con > 0)
    p.con_scale = 1.0 / (double(n_mean) * (row_ops_of(s.kind).mean_over_columns ? double(p.K) : 1.0));
  p.grad_scale = p.lambda * p.con_scale;
  return p;
}

// Step 1 of a chunk: the chunk's valid constraint rows [a, b), the model's logits on S at
// them, and what the constraint's prepare keeps.
ChunkConstraint constraint_of_chunk(const Plan& p, const ObjectiveSpec& s, const ConstraintInputs& c,
                                    const at::Tensor& z, int64_t start, int64_t a, int64_t b, Sums& sums) {
  ChunkConstraint k;
  if (b <= a) return k;
  ChunkRows& rows = k.rows;
  rows.n = b - a;
  rows.idx = p.cidx_t.slice(0, a, b);
  rows.local = p.crow_t.slice(0, a, b) - start;
  if (p.crow[b - 1] - p.crow[a] == rows.n - 1) rows.first = p.crow[a] - start;
  if (p.K > 0) k.zS = rows.of(z.index_select(1, p.S)).to(at::kFloat);
  row_ops_of(p.kind).prepare(p, s, c, z, k, sums);
  return k;
}

// Step 2 with torch ops, in place on fp32 z, no [C, V] temporary, one exp per logit: z
// turns into exp(z - max), then into softmax(z) times each row's coefficient, to which the
// sparse parts are added.
void row_terms_torch(const Plan& p, const ChunkConstraint& k, const at::Tensor& z, const at::Tensor& tgt,
                     const at::Tensor& vf, Sums& sums) {
  const ChunkRows& rows = k.rows;
  const ConstraintRowOps& ops = row_ops_of(p.kind);
  const at::Tensor tc = tgt.clamp_min(0).unsqueeze(1);  // ignored rows: any id, weight 0
  const at::Tensor z_t = z.gather(1, tc);
  const RowExp e = exp_rows_(z, rows.n > 0 && ops.wants_rest(p) ? p.S : at::Tensor());
  sums.ce.add_(((e.lse - z_t) * vf).sum().to(at::kDouble));
  at::Tensor coef = vf * p.ce_scale;  // [C, 1] on softmax(z)
  const at::Tensor g_cols = rows.n > 0 ? ops.torch_terms(p, k, e, coef, sums) : at::Tensor();  // [n, K] on S
  z.mul_(coef / e.sum);
  z.scatter_add_(1, tc, vf * -p.ce_scale);
  if (g_cols.defined()) z.index_put_({rows.local.unsqueeze(1), p.S.unsqueeze(0)}, g_cols, /*accumulate=*/true);
}

// Step 2 through cuda/loss_dispatch.h, in the order of loss_kernels.h. Its entry points
// take all C rows, the constraint's as a mask, so no row of z is copied.
void row_terms_dispatch(const Plan& p, const ChunkConstraint& k, const at::Tensor& z, const at::Tensor& tgt,
                        int64_t ignore_index, Sums& sums) {
  cuda::SubsetTermResult con;
  at::Tensor lse;  // the rows' logsumexp, when the constraint read it first
  if (k.rows.n > 0) row_ops_of(p.kind).dispatch_terms(p, k, z, tgt, ignore_index, con, lse, sums);
  const auto ce = cuda::cross_entropy_rows_(z, tgt, p.ce_scale, ignore_index, lse, con.row_coef);
  sums.ce.add_(ce.losses.sum().to(at::kDouble));
  if (con.grad.defined()) cuda::add_subset_grad_(z, p.S, con.grad);
}

struct FusedObjective : torch::autograd::Function<FusedObjective> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& targets, const ObjectiveSpec* spec, const ConstraintInputs* in,
                               int64_t chunk, int64_t ignore_index, RowOps row_ops) {
    at::NoGradGuard no_grad;
    const at::Tensor h = hidden.detach();
    const at::Tensor W = weight.detach();
    const int64_t N = h.size(0);
    const auto dev = h.device();
    const bool weight_grad = weight.requires_grad();
    const Plan p = make_plan(targets, *spec, *in, N, ignore_index, dev);

    auto dopt = at::TensorOptions().dtype(at::kDouble).device(dev);
    Sums sums{at::zeros({}, dopt), at::zeros({}, dopt), at::zeros({}, dopt), at::zeros({}, dopt)};
    at::Tensor grad_h = at::zeros_like(h);
    at::Tensor grad_w = weight_grad ? at::zeros(W.sizes(), W.options().dtype(at::kFloat)) : at::Tensor();

    for (int64_t start = 0; start < N; start += chunk) {
      const int64_t end = std::min(N, start + chunk);
      const int64_t a = std::lower_bound(p.crow.begin(), p.crow.end(), start) - p.crow.begin();
      const int64_t b = std::lower_bound(p.crow.begin(), p.crow.end(), end) - p.crow.begin();
      if (p.ce_prefix[end] == p.ce_prefix[start] && a == b) continue;  // nothing to learn here

      const at::Tensor hc = h.slice(0, start, end);
      at::Tensor z = at::mm(hc, W.t());  // [C, V] in the weight's dtype
      // The kernels read the logits as they come out of the GEMM (bf16); the torch ops work
      // on fp32 logits whatever the storage.
      const bool dispatch =
          row_ops == RowOps::dispatch || (row_ops == RowOps::automatic && cuda::kernels_apply(z));
      if (!dispatch) z = z.to(at::kFloat);
      // Soft-capped logits: everything below reads cap * tanh(z / cap); the gradient the
      // row terms leave in z is for those, so it is multiplied by their slope 1 - tanh^2.
      at::Tensor cap_slope;
      if (p.softcap > 0) {
        const at::Tensor t = at::tanh(z.to(at::kFloat) / p.softcap);
        cap_slope = (1 - t * t).to(z.scalar_type());
        z.copy_(t * p.softcap);
      }

      // 1. What the constraint needs from z before it is overwritten.
      ChunkConstraint k = constraint_of_chunk(p, *spec, *in, z, start, a, b, sums);
      // 2. The row terms: z becomes dLoss/dz.
      const at::Tensor tgt = p.tg.slice(0, start, end);
      if (!dispatch) {
        const at::Tensor vf = p.ce_valid.slice(0, start, end).to(at::kFloat).unsqueeze(1);  // [C, 1]: has a target
        row_terms_torch(p, k, z, tgt, vf, sums);
      } else {
        row_terms_dispatch(p, k, z, tgt, ignore_index, sums);
      }
      if (k.g_rows.defined()) {  // a gradient for whole rows from step 1, either way
        if (k.rows.first >= 0) z.narrow(0, k.rows.first, k.rows.n).add_(k.g_rows);
        else z.index_add_(0, k.rows.local, k.g_rows.to(z.scalar_type()));
      }
      k = ChunkConstraint();
      if (cap_slope.defined()) z.mul_(cap_slope);

      // 3. Back through the lm_head, the first GEMM straight into grad_hidden's rows. A bf16
      // z is widened for grad_W, which accumulates over the chunks in fp32.
      at::Tensor grad_hc = grad_h.slice(0, start, end);
      at::mm_out(grad_hc, z.to(W.scalar_type()), W);
      if (weight_grad) grad_w.addmm_(z.t().to(at::kFloat), hc.to(at::kFloat));
    }

    const at::Tensor ce = (sums.ce * p.ce_scale).to(at::kFloat);
    const at::Tensor con = (sums.con * p.con_scale).to(at::kFloat);
    const at::Tensor total = ce + con * p.lambda;
    // Outputs: total, ce, constraint, gate mean, then the constraint's metric terms.
    variable_list out{total, ce, con, gate_mean(p, sums)};
    for (const at::Tensor& t : row_ops_of(p.kind).terms(p, sums)) out.push_back(t);
    ctx->saved_data["grad_h"] = grad_h;
    ctx->saved_data["grad_w"] = weight_grad ? grad_w.to(W.scalar_type()) : at::Tensor();
    ctx->mark_non_differentiable(variable_list(out.begin() + 1, out.end()));
    return out;
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
    // One entry per argument of forward: hidden, weight, then six without a gradient.
    return {grad_h, grad_w, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

ObjectiveValues fused_objective(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                const ObjectiveSpec& spec, const ConstraintInputs& in,
                                const FusedObjectiveOptions& options) {
  check_inputs(hidden, weight, targets, spec, in);
  TORCH_CHECK(options.chunk_tokens >= 0, "fused_objective: chunk_tokens must be >= 0");
  const int64_t chunk = options.chunk_tokens > 0
                            ? options.chunk_tokens
                            : default_chunk_tokens(weight.size(0), weight.requires_grad(), weight.is_cuda());
  variable_list out =
      FusedObjective::apply(hidden, weight, targets, &spec, &in, chunk, options.ignore_index, options.row_ops);
  ObjectiveValues v{out[0], out[1], out[2], out[3], {}};
  v.terms.assign(out.begin() + 4, out.end());
  return v;
}

ObjectiveValues unfused_objective(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                  const ObjectiveSpec& spec, const ConstraintInputs& c, int64_t ignore_index) {
  check_inputs(hidden, weight, targets, spec, c);
  const auto dev = hidden.device();
  const auto fopt = at::TensorOptions().dtype(at::kFloat).device(dev);
  const bool constrained = spec.kind != ConstraintKind::none;
  const ConstraintRowOps& ops = row_ops_of(spec.kind);
  ObjectiveValues v;
  v.constraint = at::zeros({}, fopt);
  v.gate_mean = at::zeros({}, fopt);
  const at::Tensor valid = constrained ? c.valid.to(dev, at::kBool) : at::Tensor();
  const at::Tensor rows = constrained ? c.rows.to(dev, at::kLong) : at::Tensor();
  // One [N, V] logits tensor serves CE and a constraint that reads it; without one (and
  // without soft-capping) CE is the plain linear_cross_entropy.
  at::Tensor logits;
  if (ops.unfused_full_logits || spec.logit_softcap > 0) {
    logits = capped(at::matmul(hidden, weight.t()).to(at::kFloat), spec.logit_softcap);
    v.ce = targets.ne(ignore_index).sum().item<int64_t>() == 0
               ? logits.sum() * 0.0
               : at::cross_entropy_loss(logits, targets, {}, at::Reduction::Mean, ignore_index);
  } else {
    v.ce = linear_cross_entropy(hidden, weight, targets, ignore_index);
  }
  if (constrained) ops.unfused({hidden, weight, logits, rows, valid, spec, c}, v);
  v.total = constrained ? v.ce + spec.lambda * v.constraint : v.ce;
  return v;
}

}  // namespace safetune::loss
