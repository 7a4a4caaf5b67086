// The fused objective (CE + lambda x constraint in chunks from hidden states) against the
// plain composition of torch ops on full logits (linear_cross_entropy, pact_loss,
// kl_full_loss, anchor_loss), differentiated by autograd: values and gradients for the
// hidden states and the lm_head weight, for every constraint, the gate on and off, tied
// (trainable) and frozen weights, chunk sizes that do not divide N, N smaller than one
// chunk, constraint rows that differ from the CE rows, and no valid row at all. Each case
// runs the fused op twice: with its default row ops (torch ops on this CPU) and with the
// row ops of cuda/loss_dispatch.h forced (their torch fallbacks here: the composition the
// CUDA kernels run on a GPU). Then the same composition on bf16 logits, and the trainer: a
// few steps with objective.fused = true and false log the same losses.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <fstream>
#include <nlohmann/json.hpp>

#include "safetune/loss/fused_objective.h"
#include "safetune/safety/safety_tokens.h"
#include "safetune/text/tokenizer.h"
#include "safetune/train/config.h"
#include "safetune/train/trainer.h"
#include "test_util.h"

using namespace safetune;

namespace {

struct Case {
  std::string kind;         // none | pact | kl_full | anchor | safety_mass
  std::string mix = "gated";  // pact: gated (gate on) | full (gate off) | post
  bool tied = false;        // hidden states made from W itself, W trainable
  bool frozen = true;       // W without gradient (LoRA); ignored when tied
  bool ref_logits = false;  // kl_full / anchor: reference as [M, V] logits, not hidden + weight
  int64_t n = 45, chunk = 7;
  bool nothing_valid = false;
  double softcap = 0;  // final-logit soft-capping (Gemma 2)
  double T = 0;        // the constraint's temperature; 0: 1.5 for kl_full, 2 otherwise
};

std::string name(const Case& c) {
  return c.kind + "/" + c.mix + (c.tied ? "/tied" : c.frozen ? "/frozen" : "/trainable") +
         (c.ref_logits ? "/ref_logits" : "") + "/n" + std::to_string(c.n) + "/chunk" + std::to_string(c.chunk) +
         (c.nothing_valid ? "/none_valid" : "") + (c.softcap > 0 ? "/softcap" : "") +
         (c.T > 0 ? "/T" + std::to_string(c.T) : "");
}

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

// One run's values and gradients for the hidden states and the weight.
struct Out {
  loss::ObjectiveValues v;
  at::Tensor gH, gW;
};

// The fused run f against the unfused u of the same case.
void compare(const Case& c, const Out& f, const Out& u) {
  auto near = [](const at::Tensor& a, const at::Tensor& b, const char* what) {
    const double x = a.item<double>(), y = b.item<double>();
    EXPECT_NEAR(x, y, 1e-5 * std::max(1.0, std::abs(y))) << what;
  };
  near(f.v.total, u.v.total, "total");
  near(f.v.ce, u.v.ce, "ce");
  near(f.v.constraint, u.v.constraint, "constraint");
  near(f.v.gate_mean, u.v.gate_mean, "gate_mean");
  ASSERT_EQ(f.v.terms.size(), u.v.terms.size());
  ASSERT_EQ(f.v.terms.size(), loss::descriptor_of(*loss::parse_name<loss::ConstraintKind>(c.kind)).metric_terms.size());
  for (size_t i = 0; i < f.v.terms.size(); ++i) near(f.v.terms[i], u.v.terms[i], "metric term");
  EXPECT_FALSE(f.v.ce.requires_grad() || f.v.constraint.requires_grad() || f.v.gate_mean.requires_grad());
  ASSERT_TRUE(f.gH.defined() && u.gH.defined());
  if (c.nothing_valid) {
    EXPECT_EQ(f.v.total.item<double>(), 0.0);
    EXPECT_EQ(f.gH.abs().max().item<double>(), 0.0);
    EXPECT_EQ(u.gH.abs().max().item<double>(), 0.0);
  } else {
    EXPECT_GT(u.gH.abs().max().item<double>(), 0.0);
    EXPECT_LT(rel_diff(f.gH, u.gH), 1e-5) << "grad H";
    if (c.kind != "none") {
      EXPECT_GT(u.v.constraint.item<double>(), 1e-6) << "the constraint must be active";
    }
  }
  if (c.tied || !c.frozen) {
    ASSERT_TRUE(f.gW.defined() && u.gW.defined());
    if (!c.nothing_valid) {
      EXPECT_LT(rel_diff(f.gW, u.gW), 1e-5) << "grad W";
    }
  } else {
    EXPECT_FALSE(f.gW.defined());
    EXPECT_FALSE(u.gW.defined());
  }
}

// Random inputs: hidden rows, some without a target (ignore index) and some outside the
// constraint's row set; the constraint's rows partly invalid; logits spread like a
// trained model's (std ~2); reference logits on S near the model's.
struct Inputs {
  at::Tensor W0, A, ids, H0, targets;
  loss::ObjectiveSpec spec;
  loss::ConstraintInputs ci;
};

Inputs make_inputs(const Case& c) {
  torch::manual_seed(17 + c.n + c.chunk);
  Inputs in;
  const int64_t d = 12, V = 40, K = 6, N = c.n;
  in.W0 = torch::randn({V, d}) * 0.6;
  in.A = torch::randn({d, d}) * 0.5;  // tied: H = tanh(W[ids] A)
  in.ids = torch::randint(V, {N}, torch::kLong);
  in.H0 = torch::randn({N, d}) * 1.2;
  in.targets = torch::randint(V, {N}, torch::kLong);
  in.targets.masked_fill_(torch::rand({N}) < 0.25, loss::kIgnoreIndex);
  // The constraint's rows: every row but a few (increasing), a few of them not valid.
  const at::Tensor rows = (torch::rand({N}) < 0.8).nonzero().squeeze(1);
  const int64_t M = rows.numel();
  at::Tensor valid = torch::rand({M}) < 0.85;
  if (c.nothing_valid) {
    in.targets.fill_(loss::kIgnoreIndex);
    valid.fill_(false);
  }

  loss::ObjectiveSpec& spec = in.spec;
  loss::ConstraintInputs& fc = in.ci;
  spec.kind = *loss::parse_name<loss::ConstraintKind>(c.kind);
  spec.lambda = 0.7;
  spec.logit_softcap = c.softcap;
  fc.rows = rows;
  fc.valid = valid;
  spec.options.reference_mix = *loss::parse_name<loss::ReferenceMix>(c.mix);
  spec.options.temperature = c.T > 0 ? c.T : c.kind == "kl_full" ? 1.5 : 2.0;
  spec.S = torch::randperm(V, torch::kLong).narrow(0, 0, K);
  spec.w = (torch::rand({K}) - 0.2).clamp_min(0);  // some weights 0
  fc.t = torch::randint(20, {M}, torch::kLong);  // beyond prefix_n too: the decay matters
  const at::Tensor zS = at::matmul(in.H0.index_select(0, rows), in.W0.index_select(0, spec.S).t());
  fc.z_full = zS + torch::randn({M, K});
  fc.z_post = zS * 0.5 + torch::randn({M, K}) * 2;
  const at::Tensor ref_h = in.H0.index_select(0, rows) + torch::randn({M, d}) * 0.4;
  const at::Tensor ref_w = in.W0 + torch::randn({V, d}) * 0.1;
  if (c.kind == "safety_mass") {
    // The reference as a cache holds it: its (soft-capped) logits on S and the log-sum-exp
    // of its logits / T over the vocabulary, for both contexts.
    const double T = spec.options.temperature;
    auto cap = [&](const at::Tensor& z) { return c.softcap > 0 ? at::tanh(z / c.softcap) * c.softcap : z; };
    const at::Tensor full = cap(at::matmul(ref_h, ref_w.t()));
    const at::Tensor post = cap(at::matmul(ref_h * 0.5 + torch::randn({M, d}), ref_w.t()));
    fc.z_full = full.index_select(1, spec.S);
    fc.lse_full = (full / T).logsumexp(1);
    fc.z_post = post.index_select(1, spec.S);
    fc.lse_post = (post / T).logsumexp(1);
  } else if (c.ref_logits) {
    fc.ref_logits = at::matmul(ref_h, ref_w.t());
  } else {
    fc.ref_hidden = ref_h;
    fc.ref_weight = ref_w;
  }
  return in;
}

// One run with fresh leaves of the given dtype: the fused op with these row ops, or the
// unfused composition (nullopt).
Out run(const Case& c, const Inputs& in, std::optional<loss::RowOps> fused, at::ScalarType dtype = at::kFloat) {
  Out o;
  const bool copy = true;  // fresh leaves, never the inputs themselves
  at::Tensor W = in.W0.to(dtype, false, copy).requires_grad_(c.tied || !c.frozen);
  at::Tensor H = c.tied ? at::matmul(W.index_select(0, in.ids), in.A.to(dtype)).tanh()
                        : in.H0.to(dtype, false, copy).requires_grad_(true);
  if (c.tied) H.retain_grad();
  o.v = fused ? loss::fused_objective(H, W, in.targets, in.spec, in.ci, {c.chunk, loss::kIgnoreIndex, *fused})
              : loss::unfused_objective(H, W, in.targets, in.spec, in.ci);
  (o.v.total * 1.3).backward();
  o.gH = H.grad();
  o.gW = W.grad();
  return o;
}

// The fused op with its default row ops (torch ops on this CPU) and with the dispatch's
// forced, each against the unfused composition.
void check(const Case& c) {
  SCOPED_TRACE(name(c));
  const Inputs in = make_inputs(c);
  const Out u = run(c, in, std::nullopt);
  for (loss::RowOps ops : {loss::RowOps::automatic, loss::RowOps::dispatch}) {
    SCOPED_TRACE(ops == loss::RowOps::dispatch ? "row ops: dispatch" : "row ops: automatic");
    compare(c, run(c, in, ops), u);
  }
}

TEST(FusedObjective, MatchesUnfusedForEveryConstraint) {
  for (const char* kind : {"none", "pact", "kl_full", "anchor", "safety_mass"}) {
    for (int w = 0; w < 3; ++w) {  // frozen W, trainable W, tied (trainable) W
      Case c;
      c.kind = kind;
      c.frozen = w == 0;
      c.tied = w == 2;
      check(c);
    }
  }
}

// Soft-capped logits (cap below the logits' spread, so that tanh bends them): the fused
// op's hand-written slope against autograd through the unfused composition's tanh.
TEST(FusedObjective, SoftCappedLogits) {
  for (const char* kind : {"none", "pact", "kl_full", "anchor", "safety_mass"}) {
    for (int w = 0; w < 3; ++w) {
      Case c;
      c.kind = kind;
      c.frozen = w == 0;
      c.tied = w == 2;
      c.softcap = 1.5;
      check(c);
    }
  }
  // The cap changes the loss: a test of the cap, not of two paths ignoring it alike.
  Case c;
  c.kind = "pact";
  const Inputs in = make_inputs(c);
  Inputs capped = in;
  capped.spec.logit_softcap = 1.5;
  const double plain = run(c, in, loss::RowOps::automatic).v.total.item<double>();
  EXPECT_GT(std::abs(run(c, capped, loss::RowOps::automatic).v.total.item<double>() - plain), 1e-3);
}

TEST(FusedObjective, PactGateOnOffAndPost) {
  for (const char* mix : {"gated", "full", "post"}) {
    for (bool tied : {false, true}) {
      Case c;
      c.kind = "pact";
      c.mix = mix;
      c.tied = tied;
      check(c);
    }
  }
}

// safety_mass at T = 1 (its default: the dense part joins CE's row coefficient) and T = 2
// (its own softmax pass), every reference mix, soft-capped or not, chunk sizes that do
// not divide N and one larger than N.
TEST(FusedObjective, SafetyMassTemperaturesMixesChunks) {
  for (double T : {1.0, 2.0})
    for (const char* mix : {"full", "gated", "post"})
      for (double cap : {0.0, 1.5})
        for (int64_t chunk : {1, 7, 16, 64}) {
          Case c;
          c.kind = "safety_mass";
          c.T = T;
          c.mix = mix;
          c.softcap = cap;
          c.chunk = chunk;
          c.frozen = chunk % 2 == 0;
          c.tied = chunk == 16;
          check(c);
        }
}

TEST(FusedObjective, ReferenceAsLogits) {
  for (const char* kind : {"kl_full", "anchor"}) {
    Case c;
    c.kind = kind;
    c.ref_logits = true;
    c.frozen = false;
    check(c);
  }
}

TEST(FusedObjective, ChunkSizes) {
  for (const char* kind : {"pact", "kl_full", "anchor"}) {
    for (int64_t chunk : {1, 4, 16, 45, 64, 0}) {  // 64 > N; 0 = the default
      Case c;
      c.kind = kind;
      c.chunk = chunk;
      c.frozen = false;
      check(c);
    }
    Case small;  // N smaller than one chunk
    small.kind = kind;
    small.n = 5;
    small.chunk = 64;
    small.tied = true;
    check(small);
  }
}

TEST(FusedObjective, NothingValid) {
  for (const char* kind : {"none", "pact", "kl_full", "anchor", "safety_mass"}) {
    Case c;
    c.kind = kind;
    c.nothing_valid = true;
    c.frozen = false;
    check(c);
  }
}

// bf16 weights and hidden states: the logits come out of the GEMM in bf16 and the dispatch
// row ops keep them so (as the CUDA kernels do), the torch row ops widen them to fp32.
// Against the unfused composition in fp32 on the same rounded values, to bf16 accuracy:
// this runs the dtype handling of the GPU path on this CPU.
TEST(FusedObjective, Bf16Logits) {
  for (const char* kind : {"none", "pact", "kl_full", "anchor", "safety_mass"}) {
    Case c;
    c.kind = kind;
    c.frozen = false;
    SCOPED_TRACE(name(c));
    Inputs in = make_inputs(c);
    in.W0 = in.W0.to(at::kBFloat16).to(at::kFloat);
    in.H0 = in.H0.to(at::kBFloat16).to(at::kFloat);
    const Out u = run(c, in, std::nullopt);
    for (loss::RowOps ops : {loss::RowOps::automatic, loss::RowOps::dispatch}) {
      SCOPED_TRACE(ops == loss::RowOps::dispatch ? "row ops: dispatch" : "row ops: automatic");
      const Out f = run(c, in, ops, at::kBFloat16);
      ASSERT_EQ(f.gH.scalar_type(), at::kBFloat16);
      ASSERT_EQ(f.gW.scalar_type(), at::kBFloat16);
      for (auto [x, y, what] : {std::tuple{f.v.total, u.v.total, "total"}, std::tuple{f.v.ce, u.v.ce, "ce"},
                                std::tuple{f.v.constraint, u.v.constraint, "constraint"}}) {
        const double a = x.item<double>(), b = y.item<double>();
        EXPECT_NEAR(a, b, 2e-2 * std::max(1.0, std::abs(b))) << what;
      }
      EXPECT_LT(rel_diff(f.gH.to(at::kFloat), u.gH), 3e-2) << "grad H";
      EXPECT_LT(rel_diff(f.gW.to(at::kFloat), u.gW), 3e-2) << "grad W";
    }
  }
}

TEST(FusedObjective, RejectsBadRows) {
  loss::ObjectiveSpec spec;
  spec.kind = loss::ConstraintKind::kl_full;
  loss::ConstraintInputs fc;
  fc.rows = torch::tensor({2, 1}, torch::kLong);  // not increasing
  fc.valid = torch::ones({2}, torch::kBool);
  fc.ref_logits = torch::randn({2, 8});
  at::Tensor H = torch::randn({4, 3}), W = torch::randn({8, 3});
  at::Tensor t = torch::zeros({4}, torch::kLong);
  EXPECT_THROW(loss::fused_objective(H, W, t, spec, fc), c10::Error);
}

// ------------------------------------------------------------------ trainer

class FusedTrainerTest : public test_util::TinyRun<FusedTrainerTest> {
 public:
  static constexpr const char* kName = "safetune_fused_objective";
  static void write_data(const std::string& root) { test_util::write_constraint_data(root, 8); }
  static std::vector<std::string> overrides(const std::string& root) {
    return {"train.max_steps=3", "train.batch_size=2", "optim.lr=1e-2", "objective.lambda=0.5",
            "objective.tokens=" + root + "/tokens.json"};
  }

 protected:
  // Per-step loss terms of a short run with these overrides.
  static std::vector<nlohmann::json> losses(const std::string& out, const std::vector<std::string>& overrides) {
    auto r = train::run_training(config(out, overrides), quiet());
    EXPECT_EQ(r.exit_code, 0) << out;
    std::vector<nlohmann::json> v;
    for (const auto& m : metrics(out)) v.push_back(m["loss"]);
    return v;
  }
};

TEST_F(FusedTrainerTest, FusedAndUnfusedTrainTheSame) {
  const std::vector<std::vector<std::string>> setups = {
      {"objective.constraint=none"},
      {"objective.constraint=pact", "objective.reference=adapter_off"},
      {"objective.constraint=pact", "objective.reference=adapter_off", "objective.gate.enabled=false"},
      {"objective.constraint=kl_full", "objective.reference=adapter_off"},
      {"objective.constraint=anchor", "objective.reference=adapter_off"},
      // Full fine-tuning: the lm_head trains, the reference is a frozen copy.
      {"objective.constraint=kl_full", "lora.enabled=false", "objective.reference=copy"},
      {"objective.constraint=pact", "lora.enabled=false", "objective.reference=copy"},
  };
  int k = 0;
  for (const auto& s : setups) {
    std::string what;
    for (const auto& x : s) what += x + " ";
    SCOPED_TRACE(what);
    auto with = [&](const char* fused) {
      auto o = s;
      o.push_back(std::string("objective.fused=") + fused);
      return o;
    };
    const std::string id = std::to_string(k++);
    const auto a = losses("fused_" + id, with("true")), b = losses("unfused_" + id, with("false"));
    ASSERT_EQ(a.size(), 3u);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].size(), b[i].size()) << a[i].dump() << " vs " << b[i].dump();
      for (auto it = b[i].begin(); it != b[i].end(); ++it) {
        ASSERT_TRUE(a[i].contains(it.key())) << it.key();
        const double x = a[i][it.key()].get<double>(), y = it.value().get<double>();
        EXPECT_NEAR(x, y, 1e-5 * std::max(1.0, std::abs(y))) << "step " << i + 1 << " " << it.key();
      }
    }
    if (s[0] != "objective.constraint=none") {
      EXPECT_GT(a[0].size(), 2u) << "the constraint's term is logged";
    }
  }
}

}  // namespace

// The default chunk: fp32 logits of ~64 MiB on the CPU (40 MiB when the weight trains),
// 512 MiB on a GPU; whole GEMM blocks of 64 rows, at least 16 rows.
TEST(FusedObjectiveChunk, DefaultRows) {
  EXPECT_EQ(safetune::loss::default_chunk_tokens(32000), 512);
  EXPECT_EQ(safetune::loss::default_chunk_tokens(32000, /*weight_trains=*/true), 320);
  EXPECT_EQ(safetune::loss::default_chunk_tokens(128256), 128);
  EXPECT_EQ(safetune::loss::default_chunk_tokens(128256, true), 64);
  EXPECT_EQ(safetune::loss::default_chunk_tokens(1 << 24), 16);  // floor
  EXPECT_EQ(safetune::loss::default_chunk_tokens(64), 4096);      // ceiling
  EXPECT_EQ(safetune::loss::default_chunk_tokens(128256, false, /*gpu=*/true), 1024);
}

// ---------------------------------------------------------------------------------------
// safety_mass at the edges. The model's hidden states are its logits (W = the identity,
// d = V), so the gradient for the hidden states is the gradient for the logits itself;
// no row has a CE target, so everything measured is the constraint's.

namespace {

constexpr int64_t kEdgeV = 64, kEdgeK = 8, kEdgeRows = 6;  // S = the first kEdgeK columns

// Logit rows whose softmax puts `mass` on S, with the largest probability inside S or
// outside it, built as log-probabilities (fp64) plus a random shift per row.
at::Tensor rows_with_mass(double mass, bool argmax_in_S, uint64_t seed) {
  at::manual_seed(seed);
  at::Tensor w = at::randn({kEdgeRows, kEdgeV}, at::kDouble).mul_(0.5).exp_();
  w.narrow(1, argmax_in_S ? 0 : kEdgeK, 1).mul_(1000.0);  // one dominant token
  at::Tensor on_S = w.narrow(1, 0, kEdgeK), rest = w.narrow(1, kEdgeK, kEdgeV - kEdgeK);
  on_S.div_(on_S.sum(1, true)).mul_(mass);
  rest.div_(rest.sum(1, true)).mul_(1 - mass);
  return (w.log() + at::randn({kEdgeRows, 1}, at::kDouble) * 2).to(at::kFloat);
}

struct EdgeRun {
  double loss, max_grad;
  bool finite;
};

// The constraint alone on `logits` against a reference given by its S logits and
// log-sum-exps (fp64): the fused op with both row ops, and the plain composition.
std::vector<std::pair<std::string, EdgeRun>> run_edges(const at::Tensor& logits, const at::Tensor& z_full,
                                                       const at::Tensor& lse_full, double T) {
  const int64_t N = logits.size(0);
  loss::ObjectiveSpec spec;
  spec.kind = loss::ConstraintKind::safety_mass;
  spec.lambda = 1.0;
  spec.options.temperature = T;
  spec.options.reference_mix = loss::ReferenceMix::full;
  spec.S = at::arange(kEdgeK, at::kLong);
  loss::ConstraintInputs in;
  in.rows = at::arange(N, at::kLong);
  in.valid = at::ones({N}, at::kBool);
  in.z_full = z_full;
  in.lse_full = lse_full;
  const at::Tensor targets = at::full({N}, loss::kIgnoreIndex, at::kLong);
  const at::Tensor W = at::eye(kEdgeV, at::kFloat);
  std::vector<std::pair<std::string, EdgeRun>> out;
  for (int way = 0; way < 3; ++way) {
    at::Tensor H = logits.clone().requires_grad_(true);
    loss::ObjectiveValues v =
        way == 2 ? loss::unfused_objective(H, W, targets, spec, in)
                 : loss::fused_objective(H, W, targets, spec, in,
                                         {5, loss::kIgnoreIndex, way == 0 ? loss::RowOps::torch : loss::RowOps::dispatch});
    v.total.backward();
    const at::Tensor g = H.grad();
    EdgeRun r{v.constraint.item<double>(), g.abs().max().item<double>(),
              std::isfinite(v.total.item<double>()) && g.isfinite().all().item<bool>()};
    for (const at::Tensor& t : v.terms) r.finite = r.finite && std::isfinite(t.item<double>());
    out.emplace_back(way == 0 ? "fused, torch row ops" : way == 1 ? "fused, dispatch row ops" : "unfused", r);
  }
  return out;
}

}  // namespace

// Zero loss and zero gradient at model == reference, whatever the reference's mass on S
// (1e-9, 0.5, 1 - 1e-6) and wherever the argmax lies (in S is impossible at 1e-9 with 56
// other tokens, out of S at 1 - 1e-6 likewise; both are asserted of the rows).
TEST(SafetyMass, ZeroAtModelEqualsReference) {
  const std::vector<std::pair<double, bool>> cases = {{1e-9, false}, {0.5, true}, {0.5, false}, {1 - 1e-6, true}};
  uint64_t seed = 40;
  for (auto [mass, in_S] : cases)
    for (double T : {1.0, 2.0}) {
      SCOPED_TRACE("mass on S " + std::to_string(mass) + (in_S ? ", argmax in S" : ", argmax outside S") + ", T " +
                   std::to_string(T));
      const at::Tensor logits = rows_with_mass(mass, in_S, seed++);
      const at::Tensor argmax = logits.argmax(1);
      ASSERT_TRUE((in_S ? argmax.lt(kEdgeK) : argmax.ge(kEdgeK)).all().item<bool>());
      const at::Tensor got_mass = logits.to(at::kDouble).softmax(1).narrow(1, 0, kEdgeK).sum(1);
      ASSERT_LT((got_mass - mass).abs().max().item<double>(), 1e-6 * std::max(mass, 1e-3));
      // The reference is the model: its S logits and its log-sum-exp, in fp64.
      const at::Tensor z_full = logits.narrow(1, 0, kEdgeK);
      const at::Tensor lse = (logits.to(at::kDouble) / T).logsumexp(1);
      for (const auto& [way, r] : run_edges(logits, z_full, lse, T)) {
        EXPECT_TRUE(r.finite) << way;
        EXPECT_LT(std::abs(r.loss), 1e-6) << way;
        EXPECT_LT(r.max_grad, 1e-6) << way;
      }
      // And the same rows against a reference that differs: the loss sees it (a test of
      // the check, not of two paths that return 0 alike).
      const at::Tensor other = rows_with_mass(mass == 0.5 ? 0.2 : 0.5, in_S, seed + 100);
      for (const auto& [way, r] :
           run_edges(logits, other.narrow(1, 0, kEdgeK), (other.to(at::kDouble) / T).logsumexp(1), T)) {
        EXPECT_GT(r.loss, 1e-3) << way;
        EXPECT_GT(r.max_grad, 1e-3) << way;
      }
    }
}

// No NaN or infinity when the reference's rest mass is 0 (everything on S) or the model's
// rest mass underflows to 0 in fp32 (S's logits 200 above the rest's).
TEST(SafetyMass, FiniteWhenARestMassVanishes) {
  at::manual_seed(8);
  at::Tensor logits = at::randn({kEdgeRows, kEdgeV});
  // Reference: all of its mass on S (its log-sum-exp is that of its S logits).
  const at::Tensor z_ref = at::randn({kEdgeRows, kEdgeK}) * 2;
  for (double T : {1.0, 2.0}) {
    SCOPED_TRACE("T " + std::to_string(T));
    for (const auto& [way, r] : run_edges(logits, z_ref, (z_ref.to(at::kDouble) / T).logsumexp(1), T)) {
      EXPECT_TRUE(r.finite) << "reference rest 0, " << way;
      EXPECT_GT(r.loss, 1e-3) << "reference rest 0, " << way;
    }
    // Model: its rest underflows; reference: a rest mass of about 0.5.
    at::Tensor model = logits.clone();
    model.narrow(1, kEdgeK, kEdgeV - kEdgeK).sub_(200.0 * T);
    ASSERT_EQ(model.softmax(1).narrow(1, kEdgeK, kEdgeV - kEdgeK).sum().item<double>(), 0.0);
    const at::Tensor ref = rows_with_mass(0.5, true, 9);
    for (const auto& [way, r] :
         run_edges(model, ref.narrow(1, 0, kEdgeK), (ref.to(at::kDouble) / T).logsumexp(1), T)) {
      EXPECT_TRUE(r.finite) << "model rest 0, " << way;
      EXPECT_GT(r.loss, 1e-3) << "model rest 0, " << way;
    }
    // Both: the model's rest underflows and the reference's is 0.
    for (const auto& [way, r] : run_edges(model, z_ref, (z_ref.to(at::kDouble) / T).logsumexp(1), T))
      EXPECT_TRUE(r.finite) << "both rests 0, " << way;
  }
}

// A kind outside the enum has neither a descriptor nor row operations: an error, never a
// constraint that adds 0. And every kind the names list has both.
TEST(FusedObjective, UnknownKindIsAnError) {
  const auto bogus = static_cast<loss::ConstraintKind>(loss::names_of(loss::ConstraintKind{}).size());
  EXPECT_THROW(loss::descriptor_of(bogus), std::invalid_argument);
  loss::ObjectiveSpec spec;
  spec.kind = bogus;
  spec.S = torch::arange(2, torch::kLong);
  loss::ConstraintInputs in;
  in.rows = torch::arange(3, torch::kLong);
  in.valid = torch::ones({3}, torch::kBool);
  at::Tensor H = torch::randn({3, 4}, torch::requires_grad()), W = torch::randn({8, 4});
  const at::Tensor t = torch::zeros({3}, torch::kLong);
  EXPECT_ANY_THROW(loss::fused_objective(H, W, t, spec, in));
  EXPECT_ANY_THROW(loss::unfused_objective(H, W, t, spec, in));
  for (const std::string& name : loss::names_of(loss::ConstraintKind{})) {
    const loss::ConstraintKind kind = *loss::parse_name<loss::ConstraintKind>(name);
    EXPECT_EQ(loss::descriptor_of(kind).kind, kind) << name;
  }
}
