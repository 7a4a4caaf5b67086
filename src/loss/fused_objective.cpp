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
#include <string>
#include <vector>

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

void check_inputs(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& targets, const ObjectiveSpec& s,
                  const ConstraintInputs& c) {
  TORCH_CHECK(h.dim() == 2 && weight.dim() == 2 && h.size(1) == weight.size(1),
              "fused_objective: expected hidden [N, d] and weight [V, d]");
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == h.size(0), "fused_objective: targets must be [N]");
  if (s.kind == ConstraintKind::none) return;
  const std::string& kind = name_of(s.kind);
  TORCH_CHECK(std::isfinite(s.lambda), "fused_objective: lambda must be finite");
  TORCH_CHECK(c.rows.dim() == 1 && c.valid.dim() == 1 && c.valid.size(0) == c.rows.size(0),
              "fused_objective: rows and valid must be [M]");
  const int64_t M = c.rows.size(0);
  const ConstraintDescriptor& desc = descriptor_of(s.kind);
  if (desc.needs_tokens)
    TORCH_CHECK(s.S.dim() == 1 && s.S.numel() > 0, "fused_objective: ", kind, " needs the columns S [K]");
  const bool mixed = desc.mixes_post_context && s.options.reference_mix != ReferenceMix::full;
  if (s.kind == ConstraintKind::safety_mass) {
    const int64_t K = s.S.numel();
    TORCH_CHECK(c.z_full.dim() == 2 && c.z_full.size(0) == M && c.z_full.size(1) == K && c.lse_full.defined() &&
                    c.lse_full.numel() == M,
                "fused_objective: safety_mass needs z_full [M, K] and lse_full [M]");
    if (mixed)
      TORCH_CHECK(c.z_post.defined() && c.z_post.sizes() == c.z_full.sizes() && c.lse_post.defined() &&
                      c.lse_post.numel() == M && c.t.dim() == 1 && c.t.size(0) == M,
                  "fused_objective: safety_mass with reference_mix ", name_of(s.options.reference_mix),
                  " needs z_post [M, K], lse_post [M] and t [M]");
  } else if (s.kind == ConstraintKind::pact) {
    const int64_t K = s.S.numel();
    TORCH_CHECK(s.w.dim() == 1 && s.w.size(0) == K, "fused_objective: w must be [K]");
    TORCH_CHECK(c.t.dim() == 1 && c.t.size(0) == M, "fused_objective: t must be [M]");
    TORCH_CHECK(c.z_full.dim() == 2 && c.z_full.size(0) == M && c.z_full.size(1) == K,
                "fused_objective: z_full must be [M, K]");
    if (s.options.reference_mix != ReferenceMix::full)
      TORCH_CHECK(c.z_post.defined() && c.z_post.sizes() == c.z_full.sizes(), "fused_objective: z_post must be [M, K]");
  } else if (c.ref_hidden.defined()) {
    TORCH_CHECK(c.ref_hidden.dim() == 2 && c.ref_hidden.size(0) == M && c.ref_weight.dim() == 2 &&
                    c.ref_weight.size(0) == weight.size(0) && c.ref_weight.size(1) == c.ref_hidden.size(1),
                "fused_objective: expected ref_hidden [M, d] and ref_weight [V, d]");
  } else {
    TORCH_CHECK(c.ref_logits.defined() && c.ref_logits.dim() == 2 && c.ref_logits.size(0) == M &&
                    c.ref_logits.size(1) == weight.size(0),
                "fused_objective: ", kind, " needs ref_hidden + ref_weight or ref_logits [M, V]");
  }
}

// cap * tanh(z / cap), the final-logit soft-capping; z itself when cap is 0.
at::Tensor capped(const at::Tensor& z, double cap) { return cap > 0 ? at::tanh(z / cap) * cap : z; }

// The reference's fp32 logits at constraint rows `ci` (indices into M). Logits made here
// from hidden states are soft-capped as the model's own would be; given logits already are.
at::Tensor reference_rows(const ConstraintInputs& c, const at::Tensor& ci, double cap) {
  if (c.ref_hidden.defined())
    return capped(at::mm(c.ref_hidden.index_select(0, ci.to(c.ref_hidden.device())), c.ref_weight.t()).to(at::kFloat),
                  cap);
  return c.ref_logits.index_select(0, ci.to(c.ref_logits.device())).to(at::kFloat);
}

// x [n, V] fp32 becomes exp(x - rowmax) in place; returns the row sums of that and the
// rows' logsumexp, both [n, 1]. This is logsumexp without its [n, V] temporary exp(x - max),
// which at one chunk of logits is as large as the chunk itself, and it leaves the
// exponentials where the softmax needs them.
struct RowExp {
  at::Tensor max, sum, lse;  // lse = max + log(sum)
  at::Tensor rest;           // with `rest_of`: the row sums outside the columns rest_of, [n, 1]
};
RowExp exp_rows_(const at::Tensor& x, const at::Tensor& rest_of = {}) {
  const at::Tensor m = x.amax(1, /*keepdim=*/true);
  x.sub_(m).exp_();
  RowExp r;
  if (rest_of.defined()) {
    // The rest summed on its own, S's columns zeroed for the one sum the softmax needs
    // anyway: 1 - p_S by subtraction would lose p_R's digits when p_S is close to 1.
    const at::Tensor on_S = x.index_select(1, rest_of);
    x.index_fill_(1, rest_of, 0.0);
    r.rest = x.sum(1, /*keepdim=*/true);
    x.index_copy_(1, rest_of, on_S);
    r.sum = r.rest + on_S.sum(1, /*keepdim=*/true);
  } else {
    r.sum = x.sum(1, /*keepdim=*/true);
  }
  r.max = m;
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

// What the whole op works from, set up once before the chunks: the rows with a CE target
// and the constraint's valid rows (cidx: index into M; crow: hidden row), increasing, so
// that each chunk owns a range of each; the per-run tensors on the device; the scales.
struct Plan {
  ConstraintKind kind = ConstraintKind::none;
  at::Tensor tg, ce_valid;         // [N] targets (int64) and whether each has one
  std::vector<int64_t> ce_prefix;  // ce_prefix[i] = targets among rows < i
  std::vector<int64_t> cidx, crow;
  at::Tensor cidx_t, crow_t;
  at::Tensor S, w, tt;  // [K] columns, [K] pact's weights, [M] the gate's t
  int64_t K = 0, n_ce = 0, n_con = 0;
  double T = 1, lambda = 0;
  double softcap = 0;  // final-logit soft-capping of the lm_head's output
  // con_sum adds up the row losses (pact, kl_full: T^2 KL; anchor: sum over S of the
  // squared differences); the constraint is their mean, con_sum * con_scale, and its
  // gradient for the logits lambda * con_scale * d(row loss)/dz.
  double ce_scale = 0, con_scale = 0, grad_scale = 0;
};

Plan make_plan(const at::Tensor& targets, const ObjectiveSpec& s, const ConstraintInputs& c, int64_t N,
               int64_t ignore_index, const c10::Device& dev) {
  Plan p;
  p.kind = s.kind;
  const bool constrained = s.kind != ConstraintKind::none;
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
  if (s.kind == ConstraintKind::pact) p.w = s.w.to(dev, at::kFloat);
  if (descriptor_of(s.kind).mixes_post_context && s.options.reference_mix != ReferenceMix::full)
    p.tt = c.t.to(dev, at::kLong);
  p.ce_scale = p.n_ce > 0 ? 1.0 / double(p.n_ce) : 0.0;
  // The mean's count: the constrained rows, or every response row given (safety_mass).
  const int64_t n_mean = descriptor_of(s.kind).normalise_by_all_rows && constrained ? c.rows.numel() : p.n_con;
  if (p.n_con > 0) p.con_scale = 1.0 / (double(n_mean) * (s.kind == ConstraintKind::anchor ? double(p.K) : 1.0));
  p.grad_scale = p.lambda * p.con_scale;
  return p;
}

// The sums over the chunks (fp64 scalars on the device).
struct Sums {
  at::Tensor ce, con, gate;
  at::Tensor mass;  // safety_mass: the mass terms KLbin(a_S || p_S), without T^2
};

// kl_full on the chunk's constraint rows: adds their T^2 KL(r || p) to con_sum and returns
// its gradient for those rows times `scale`, T (p - r) scale as [n, V] fp32, where
// p = softmax(z / T) and r = softmax(zr / T). Two [n, V] buffers besides z: the reference's
// log r (later the scratch, then p and the gradient) and r. The KL is summed as
// sum r log r - sum r z / T + lse(z / T) sum r, so that log p is never stored.
at::Tensor kl_full_rows(const ConstraintInputs& c, const ChunkRows& rows, const at::Tensor& z, double T, double scale,
                        double cap, at::Tensor& con_sum) {
  const at::Tensor zrow = rows.of(z);  // any float dtype, read only
  at::Tensor log_r = reference_rows(c, rows.idx, cap).div_(T);
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

// Step 1 of a chunk: what the constraint needs from its logits z before they are
// overwritten, on the chunk's valid constraint rows.
struct ChunkConstraint {
  ChunkRows rows;
  at::Tensor zS;      // [n, K] fp32: the model's logits on S
  at::Tensor z_ref;   // pact: [n, K] the gate's mix of the references on S
  at::Tensor lr_S;    // anchor: [n, K] the reference's log-probabilities on S
  at::Tensor g_rows;  // kl_full, safety_mass at T != 1: [n, V] a gradient for the rows
  at::Tensor a, a_rest;  // safety_mass: the reference's buckets, [n, K] and [n, 1] fp64
  at::Tensor g_cols;     // safety_mass at T != 1: [n, K] its gradient on S (loss summed)
};

// safety_mass's loss of the chunk's constrained rows (added to con_sum, its mass terms to
// mass_sum) and its gradient for their logits, given the row max of z / T [n, 1], the sum
// of exp(z / T - max) [n, 1] and the model's rest mass p_R [n, 1]: a coefficient per row
// on softmax(z / T) (the dense part, T c with c = 1 - a_R / p_R) and [n, K] on the
// columns S (the sparse part, T (p_j (1 - c) - a_j)), both times scale. fp64: [n, K] only.
struct BucketGrad {
  at::Tensor coef, cols;
};
BucketGrad safety_mass_rows(const ChunkConstraint& k, const at::Tensor& max, const at::Tensor& sum,
                            const at::Tensor& p_rest, double T, double scale, Sums& sums) {
  // log p = z / T - max - log(sum) (max of z / T): no rounding at the scale of the
  // logsumexp itself, which zero-at-reference would feel on the largest p_j.
  const at::Tensor log_p = k.zS.to(at::kDouble) / T - max.to(at::kDouble) - sum.to(at::kDouble).log();
  const at::Tensor p = log_p.exp();
  const at::Tensor a_rest_f = k.a_rest.clamp_min(kRestFloor);
  const at::Tensor p_rest_f = p_rest.to(at::kDouble).clamp_min(kRestFloor);
  const at::Tensor log_rest_ratio = a_rest_f.log() - p_rest_f.log();
  const at::Tensor rest_term = k.a_rest * log_rest_ratio;  // [n, 1]
  const at::Tensor rows_kl = (at::xlogy(k.a, k.a) - k.a * log_p).sum(1, /*keepdim=*/true) + rest_term;
  sums.con.add_(rows_kl.sum() * (T * T));
  const at::Tensor a_S = k.a.sum(1, /*keepdim=*/true);
  sums.mass.add_((at::xlogy(a_S, a_S) - a_S * log_p.logsumexp(1, /*keepdim=*/true) + rest_term).sum());
  const at::Tensor c = 1 - a_rest_f / p_rest_f;  // [n, 1]
  BucketGrad g;
  g.coef = (c * (scale * T)).to(at::kFloat);
  g.cols = ((p * (1 - c) - k.a) * (scale * T)).to(at::kFloat);
  return g;
}

ChunkConstraint constraint_of_chunk(const Plan& p, const ObjectiveSpec& s, const ConstraintInputs& c,
                                    const at::Tensor& z, int64_t start, int64_t a, int64_t b, Sums& sums) {
  ChunkConstraint k;
  if (b <= a) return k;
  const auto dev = z.device();
  ChunkRows& rows = k.rows;
  rows.n = b - a;
  rows.idx = p.cidx_t.slice(0, a, b);
  rows.local = p.crow_t.slice(0, a, b) - start;
  if (p.crow[b - 1] - p.crow[a] == rows.n - 1) rows.first = p.crow[a] - start;
  if (p.K > 0) k.zS = rows.of(z.index_select(1, p.S)).to(at::kFloat);
  if (p.kind == ConstraintKind::safety_mass) {
    // The reference's |S|+1 probabilities, mixed by the gate when the post-only context is.
    const bool full = s.options.reference_mix == ReferenceMix::full;
    auto ref_rows = [&](const at::Tensor& x) { return x.index_select(0, rows.idx.to(x.device())).to(dev); };
    at::Tensor gate;
    if (!full) {
      gate = gate_values(k.zS, ref_rows(c.z_post).to(at::kFloat), p.tt.index_select(0, rows.idx), s.options);
      sums.gate.add_(gate.sum().to(at::kDouble));
    }
    const BucketReference ref =
        bucket_reference(ref_rows(c.z_full), ref_rows(c.lse_full), full ? at::Tensor() : ref_rows(c.z_post),
                         full ? at::Tensor() : ref_rows(c.lse_post), gate, p.T);
    k.a = ref.a;
    k.a_rest = ref.a_rest.unsqueeze(1);
    if (p.T != 1) {
      // softmax(z / T) is not CE's softmax: its own [n, V] pass, its dense part as g_rows.
      const at::Tensor pT = rows.of(z).to(at::kFloat).div(p.T);
      const RowExp e = exp_rows_(pT, p.S);
      const BucketGrad g = safety_mass_rows(k, e.max, e.sum, e.rest / e.sum, p.T, p.grad_scale, sums);
      k.g_rows = pT.mul_(g.coef / e.sum);
      k.g_cols = g.cols;
    }
  } else if (p.kind == ConstraintKind::pact) {
    // As pact_loss: the gate from the (detached) model logits on S mixes the contexts.
    const bool full = s.options.reference_mix == ReferenceMix::full;
    const at::Tensor zf = c.z_full.index_select(0, rows.idx.to(c.z_full.device())).to(dev, at::kFloat);
    const at::Tensor zp =
        full ? at::Tensor() : c.z_post.index_select(0, rows.idx.to(c.z_post.device())).to(dev, at::kFloat);
    const at::Tensor gate = gate_values(k.zS, zp, full ? at::Tensor() : p.tt.index_select(0, rows.idx), s.options);
    sums.gate.add_(gate.sum().to(at::kDouble));
    k.z_ref = full ? zf : (1 - gate).unsqueeze(1) * zf + gate.unsqueeze(1) * zp;
  } else if (p.kind == ConstraintKind::anchor) {
    const at::Tensor zr = reference_rows(c, rows.idx, p.softcap);  // scratch for its exponentials
    const at::Tensor zr_S = zr.index_select(1, p.S);
    k.lr_S = zr_S - exp_rows_(zr).lse;
  } else if (p.kind == ConstraintKind::kl_full) {
    k.g_rows = kl_full_rows(c, rows, z, p.T, p.grad_scale, p.softcap, sums.con);
  }
  return k;
}

// Step 2 with torch ops, in place on fp32 z, no [C, V] temporary, one exp per logit: z
// turns into exp(z - max), then into softmax(z) times each row's coefficient, to which the
// sparse parts are added.
void row_terms_torch(const Plan& p, const ChunkConstraint& k, const at::Tensor& z, const at::Tensor& tgt,
                     const at::Tensor& vf, Sums& sums) {
  const ChunkRows& rows = k.rows;
  const double T = p.T;
  const at::Tensor tc = tgt.clamp_min(0).unsqueeze(1);  // ignored rows: any id, weight 0
  const at::Tensor z_t = z.gather(1, tc);
  const bool bucket_here = p.kind == ConstraintKind::safety_mass && p.T == 1 && rows.n > 0;
  const RowExp e = exp_rows_(z, bucket_here ? p.S : at::Tensor());
  sums.ce.add_(((e.lse - z_t) * vf).sum().to(at::kDouble));
  at::Tensor coef = vf * p.ce_scale;  // [C, 1] on softmax(z)
  at::Tensor g_cols;                  // [n, K] on the columns S
  if (p.kind == ConstraintKind::pact && rows.n > 0) {
    at::Tensor q = at::softmax(k.z_ref / T, -1) * p.w.unsqueeze(0);
    q = q / q.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
    const at::Tensor log_p = at::log_softmax(k.zS / T, -1);
    sums.con.add_(((at::xlogy(q, q) - q * log_p).sum() * (T * T)).to(at::kDouble));
    // d/dzS of T^2 KL = T (softmax(zS / T) sum(q) - q).
    g_cols = (log_p.exp() * q.sum(-1, /*keepdim=*/true) - q).mul_(p.grad_scale * T);
  } else if (p.kind == ConstraintKind::anchor && rows.n > 0) {
    const at::Tensor diff = k.zS - rows.of(e.lse) - k.lr_S;  // lp_S - lr_S
    sums.con.add_(diff.pow(2).sum().to(at::kDouble));
    g_cols = diff * (2.0 * p.grad_scale);
    coef.index_add_(0, rows.local, -g_cols.sum(1, /*keepdim=*/true));
  } else if (bucket_here) {
    // T = 1: CE's softmax is the model's p; the dense part joins CE's row coefficient.
    const BucketGrad g =
        safety_mass_rows(k, rows.of(e.max), rows.of(e.sum), rows.of(e.rest / e.sum), T, p.grad_scale, sums);
    coef.index_add_(0, rows.local, g.coef);
    g_cols = g.cols;
  } else if (p.kind == ConstraintKind::safety_mass && rows.n > 0) {
    g_cols = k.g_cols;  // T != 1: computed from the logits before they were overwritten
  }
  z.mul_(coef / e.sum);
  z.scatter_add_(1, tc, vf * -p.ce_scale);
  if (g_cols.defined()) z.index_put_({rows.local.unsqueeze(1), p.S.unsqueeze(0)}, g_cols, /*accumulate=*/true);
}

// Step 2 through cuda/loss_dispatch.h, in the order of loss_kernels.h. Its entry points
// take all C rows, the constraint's as a mask, so no row of z is copied.
void row_terms_dispatch(const Plan& p, const ChunkConstraint& k, const at::Tensor& z, const at::Tensor& tgt,
                        int64_t ignore_index, Sums& sums) {
  const ChunkRows& rows = k.rows;
  const int64_t C = z.size(0);
  const auto f32 = z.options().dtype(at::kFloat);
  cuda::SubsetTermResult con;
  at::Tensor lse;  // anchor: the rows' logsumexp, read once and used twice
  if (rows.n > 0 && (p.kind == ConstraintKind::pact || p.kind == ConstraintKind::anchor)) {
    const at::Tensor mask = at::zeros({C}, f32.dtype(at::kBool)).index_fill_(0, rows.local, true);
    auto all_rows = [&](const at::Tensor& x) { return at::zeros({C, p.K}, f32).index_copy_(0, rows.local, x); };
    if (p.kind == ConstraintKind::pact) {
      con = cuda::subset_kl_rows(z, p.S, all_rows(k.z_ref), p.w, mask, p.T, p.grad_scale);
    } else {
      lse = cuda::cross_entropy_rows_(z, tgt, p.ce_scale, ignore_index, {}, {}, /*write_grad=*/false).lse;
      con = cuda::anchor_rows(z, p.S, lse, all_rows(k.lr_S), mask, p.grad_scale);
    }
    sums.con.add_(con.losses.sum().to(at::kDouble));
  } else if (rows.n > 0 && p.kind == ConstraintKind::safety_mass && p.T == 1) {
    const at::Tensor mask = at::zeros({C}, f32.dtype(at::kBool)).index_fill_(0, rows.local, true);
    auto all_rows = [&](const at::Tensor& x) {
      return at::zeros({C, x.size(1)}, f32).index_copy_(0, rows.local, x.to(at::kFloat));
    };
    lse = cuda::cross_entropy_rows_(z, tgt, p.ce_scale, ignore_index, {}, {}, /*write_grad=*/false).lse;
    const cuda::SafetyMassRowsResult b = cuda::safety_mass_rows(z, p.S, lse, all_rows(k.a),
                                                                all_rows(k.a_rest).squeeze(1), mask, kRestFloor, p.grad_scale);
    con.grad = b.grad;
    con.row_coef = b.row_coef;
    sums.con.add_(b.losses.sum().to(at::kDouble));
    sums.mass.add_(b.mass_terms.sum().to(at::kDouble));
  } else if (rows.n > 0 && p.kind == ConstraintKind::safety_mass) {
    // T != 1: loss and gradient already made from the logits (g_rows, g_cols).
    con.grad = at::zeros({C, p.K}, f32).index_copy_(0, rows.local, k.g_cols);
  }
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
      if (k.g_rows.defined()) {  // kl_full and safety_mass at T != 1, either way
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
    const at::Tensor gate = (p.n_con > 0 ? sums.gate / double(p.n_con) : sums.gate).to(at::kFloat);
    const at::Tensor total = ce + con * p.lambda;
    // safety_mass: the mass term's mean, and the shape term's, the rest of L / T^2.
    const at::Tensor mass = (sums.mass * p.con_scale).to(at::kFloat);
    const at::Tensor shape = (sums.con * (p.con_scale / (p.T * p.T)) - sums.mass * p.con_scale).to(at::kFloat);
    ctx->saved_data["grad_h"] = grad_h;
    ctx->saved_data["grad_w"] = weight_grad ? grad_w.to(W.scalar_type()) : at::Tensor();
    ctx->mark_non_differentiable({ce, con, gate, mass, shape});
    return {total, ce, con, gate, mass, shape};
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

namespace {
// The terms a kind logs (its descriptor's metric_terms), from the values the op computes.
std::vector<at::Tensor> metric_terms(ConstraintKind kind, const at::Tensor& gate, const at::Tensor& mass,
                                     const at::Tensor& shape) {
  std::vector<at::Tensor> out;
  for (const std::string& name : descriptor_of(kind).metric_terms) {
    if (name == "gate") out.push_back(gate);
    else if (name == "mass_term") out.push_back(mass);
    else if (name == "shape_term") out.push_back(shape);
    else TORCH_CHECK(false, "fused_objective: no value for the metric term '", name, "'");
  }
  return out;
}
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
  v.terms = metric_terms(spec.kind, v.gate_mean, out[4], out[5]);
  return v;
}

ObjectiveValues unfused_objective(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                  const ObjectiveSpec& spec, const ConstraintInputs& c, int64_t ignore_index) {
  check_inputs(hidden, weight, targets, spec, c);
  const auto dev = hidden.device();
  const auto fopt = at::TensorOptions().dtype(at::kFloat).device(dev);
  const bool constrained = spec.kind != ConstraintKind::none;
  ObjectiveValues v;
  v.constraint = at::zeros({}, fopt);
  v.gate_mean = at::zeros({}, fopt);
  const at::Tensor valid = constrained ? c.valid.to(dev, at::kBool) : at::Tensor();
  const at::Tensor rows = constrained ? c.rows.to(dev, at::kLong) : at::Tensor();
  if (spec.kind == ConstraintKind::safety_mass) {
    const at::Tensor logits = capped(at::matmul(hidden, weight.t()).to(at::kFloat), spec.logit_softcap);
    v.ce = targets.ne(ignore_index).sum().item<int64_t>() == 0
               ? logits.sum() * 0.0
               : at::cross_entropy_loss(logits, targets, {}, at::Reduction::Mean, ignore_index);
    const SafetyMassResult r =
        safety_mass_loss(logits.index_select(0, rows), spec.S.to(dev), c.z_full.to(dev), c.lse_full.to(dev),
                         c.z_post.defined() ? c.z_post.to(dev) : at::Tensor(),
                         c.lse_post.defined() ? c.lse_post.to(dev) : at::Tensor(),
                         c.t.defined() ? c.t.to(dev) : at::Tensor(), valid, spec.options);
    v.constraint = r.loss;
    v.gate_mean = r.gate_mean;
    v.total = v.ce + spec.lambda * v.constraint;
    v.terms = metric_terms(spec.kind, r.gate_mean, r.mass_term, r.shape_term);
    return v;
  }
  if (needs_whole_vocab(spec.kind)) {
    // One [N, V] logits tensor serves both terms; the reference's [M, V] logits too.
    const at::Tensor logits = capped(at::matmul(hidden, weight.t()).to(at::kFloat), spec.logit_softcap);
    if (targets.ne(ignore_index).sum().item<int64_t>() == 0) v.ce = logits.sum() * 0.0;
    else v.ce = at::cross_entropy_loss(logits, targets, {}, at::Reduction::Mean, ignore_index);
    at::Tensor ref;
    {
      at::NoGradGuard no_grad;
      ref = c.ref_hidden.defined() ? capped(at::matmul(c.ref_hidden, c.ref_weight.t()).to(at::kFloat), spec.logit_softcap)
                                   : c.ref_logits.to(dev, at::kFloat);
    }
    const at::Tensor lt = logits.index_select(0, rows);
    v.constraint = spec.kind == ConstraintKind::kl_full ? kl_full_loss(lt, ref, valid, spec.options.temperature)
                                                        : anchor_loss(lt, ref, spec.S.to(dev), valid);
  } else {
    if (spec.logit_softcap > 0) {
      const at::Tensor logits = capped(at::matmul(hidden, weight.t()).to(at::kFloat), spec.logit_softcap);
      v.ce = targets.ne(ignore_index).sum().item<int64_t>() == 0
                 ? logits.sum() * 0.0
                 : at::cross_entropy_loss(logits, targets, {}, at::Reduction::Mean, ignore_index);
    } else {
      v.ce = linear_cross_entropy(hidden, weight, targets, ignore_index);
    }
    if (spec.kind == ConstraintKind::pact) {
      const at::Tensor WS = weight.index_select(0, spec.S.to(dev, at::kLong));
      const at::Tensor z_theta = capped(at::matmul(hidden.index_select(0, rows), WS.t()), spec.logit_softcap);
      ConstraintResult r = pact_loss(z_theta, c.z_full.to(dev), c.z_post.defined() ? c.z_post.to(dev) : at::Tensor(),
                                     spec.w.to(dev), c.t.to(dev), valid, spec.options);
      v.constraint = r.loss;
      v.gate_mean = r.gate_mean;
    }
  }
  v.total = constrained ? v.ce + spec.lambda * v.constraint : v.ce;
  v.terms = metric_terms(spec.kind, v.gate_mean, at::zeros({}, fopt), at::zeros({}, fopt));
  return v;
}

}  // namespace safetune::loss
