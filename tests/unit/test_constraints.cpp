// The safety constraints (pact, kl_full, anchor, safety_mass) and step 1's aggregation against an
// independent PyTorch implementation (tests/reference/pact_reference.py, float64) on
// random logits: values and gradients w.r.t. the model's logits, with ignored positions,
// every reference mix and the prefix decay on and off. Plus the identities the method
// implies.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "safetune/core/error.h"
#include "safetune/data/batch.h"
#include "safetune/io/tensor_io.h"
#include "safetune/loss/constraints.h"
#include "safetune/safety/safety_tokens.h"
#include "safetune/train/objective.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace safetune;
using nlohmann::json;

namespace {

fs::path temp_dir(const std::string& name) { return test_util::fresh_temp_dir("safetune_constraints_" + name); }

std::map<std::string, at::Tensor> run_reference(const std::string& what, const fs::path& dir,
                                                const std::vector<std::pair<std::string, at::Tensor>>& in,
                                                const std::map<std::string, std::string>& meta) {
  io::save_tensors((dir / "in.safetensors").string(), in, meta);
  const std::string cmd = test_util::kPython + " " + SAFETUNE_SOURCE_DIR + "/tests/reference/pact_reference.py " +
                          what + " " + (dir / "in.safetensors").string() + " " + (dir / "out.safetensors").string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::map<std::string, at::Tensor> out;
  if (fs::exists(dir / "out.safetensors")) out = io::load_tensors((dir / "out.safetensors").string());
  fs::remove_all(dir);
  return out;
}

void expect_close(const at::Tensor& got, const at::Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  at::Tensor g = got.to(at::kDouble).reshape(-1), w = want.to(at::kDouble).reshape(-1);
  const double err = (g - w).abs().max().item<double>();
  const double scale = std::max(1.0, w.abs().max().item<double>());
  EXPECT_LE(err, tol * scale) << what << ": max abs error " << err;
}

struct Case {
  at::Tensor z_theta, z_full, z_post, w, t, valid, logits_theta, logits_ref, S;
  at::Tensor logits_post;  // safety_mass: the post-only context over the whole vocabulary
  loss::ConstraintOptions o;
};

Case random_case(uint64_t seed, const std::string& mix, bool decay, double T, bool some_invalid) {
  at::manual_seed(seed);
  const int64_t N = 14, V = 40, K = 10;
  Case c;
  c.S = at::randperm(V, at::kLong).narrow(0, 0, K);
  // Different scales, so that the spreads I = k_p / |S| differ and the gate is not flat.
  c.logits_theta = at::randn({N, V}) * 3.0;
  c.logits_ref = at::randn({N, V}) * 1.5;
  c.z_theta = c.logits_theta.index_select(1, c.S);
  c.z_full = c.logits_ref.index_select(1, c.S);
  c.z_post = at::randn({N, K}) * 0.4;
  c.logits_post = at::randn({N, V}) * 2.0;
  at::Tensor v = at::randn({K});
  c.w = v.clamp_min(0);
  c.w[0] = 0.7;  // at least one positive weight
  c.t = at::arange(N, at::kLong) % 11;  // crosses N = 8
  c.valid = at::ones({N}, at::kBool);
  if (some_invalid) {
    c.valid[2] = false;
    c.valid[7] = false;
    c.valid[13] = false;
  }
  c.o.temperature = T;
  c.o.reference_mix = *loss::parse_name<loss::ReferenceMix>(mix);
  c.o.prefix_decay = decay;
  return c;
}

json options_json(const loss::ConstraintOptions& o) {
  return {{"temperature", o.temperature}, {"reference_mix", loss::name_of(o.reference_mix)}, {"gate_alpha", o.gate.alpha},
          {"gate_b", o.gate.b}, {"gate_top_p", o.gate.top_p}, {"gate_temperature", o.gate.temperature},
          {"prefix_decay", o.prefix_decay}, {"prefix_n", o.gate.prefix_n}, {"prefix_tau", o.gate.prefix_tau}};
}

at::Tensor grad_of(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& x, at::Tensor* value) {
  at::Tensor leaf = x.detach().clone().requires_grad_(true);
  at::Tensor y = f(leaf);
  y.backward();
  *value = y.detach();
  return leaf.grad().defined() ? leaf.grad() : at::zeros_like(leaf);
}

}  // namespace

TEST(Constraints, MatchIndependentReference) {
  if (!test_util::python_has("torch, numpy")) GTEST_FAIL() << test_util::python_missing("torch, numpy");
  std::vector<Case> cases;
  uint64_t seed = 1;
  for (const char* mix : {"gated", "full", "post"})
    for (bool decay : {true, false})
      for (bool invalid : {false, true}) cases.push_back(random_case(seed++, mix, decay, mix[0] == 'f' ? 1.0 : 2.0, invalid));
  // A case with nothing valid: every loss is 0 with zero gradient.
  cases.push_back(random_case(seed++, "gated", true, 2.0, false));
  cases.back().valid = at::zeros({14}, at::kBool);

  std::vector<std::pair<std::string, at::Tensor>> in;
  std::map<std::string, std::string> meta{{"cases", std::to_string(cases.size())}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string p = "c" + std::to_string(i) + ".";
    for (auto& [k, v] : std::vector<std::pair<std::string, at::Tensor>>{
             {"z_theta", c.z_theta}, {"z_full", c.z_full}, {"z_post", c.z_post}, {"w", c.w},
             {"t", c.t}, {"valid", c.valid.to(at::kLong)}, {"logits_theta", c.logits_theta},
             {"logits_ref", c.logits_ref}, {"S", c.S}, {"logits_post", c.logits_post}})
      in.emplace_back(p + k, v.contiguous());
    meta["c" + std::to_string(i)] = options_json(c.o).dump();
  }
  auto ref = run_reference("losses", temp_dir("losses"), in, meta);
  ASSERT_FALSE(ref.empty());

  double max_gate = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string p = "c" + std::to_string(i) + ".";
    SCOPED_TRACE("case " + std::to_string(i) + " mix " + loss::name_of(c.o.reference_mix) + " decay " + std::to_string(c.o.prefix_decay));
    at::Tensor val, gate_mean;
    at::Tensor g = grad_of(
        [&](const at::Tensor& zt) {
          auto r = loss::pact_loss(zt, c.z_full, c.z_post, c.w, c.t, c.valid, c.o);
          gate_mean = r.gate_mean;
          return r.loss;
        },
        c.z_theta, &val);
    expect_close(val, ref.at(p + "pact").squeeze(), 1e-5, "pact");
    expect_close(g, ref.at(p + "pact_grad"), 1e-5, "pact gradient");
    expect_close(gate_mean, ref.at(p + "gate_mean").squeeze(), 1e-5, "gate mean");
    if (c.o.reference_mix == loss::ReferenceMix::gated) max_gate = std::max(max_gate, gate_mean.item<double>());

    g = grad_of([&](const at::Tensor& zt) { return loss::weighted_subset_kl(zt, c.z_full, c.w, c.valid, c.o.temperature); },
                c.z_theta, &val);
    expect_close(val, ref.at(p + "wkl").squeeze(), 1e-5, "weighted subset KL");
    expect_close(g, ref.at(p + "wkl_grad"), 1e-5, "weighted subset KL gradient");

    g = grad_of([&](const at::Tensor& lt) { return loss::kl_full_loss(lt, c.logits_ref, c.valid, c.o.temperature); },
                c.logits_theta, &val);
    expect_close(val, ref.at(p + "kl_full").squeeze(), 1e-5, "kl_full");
    expect_close(g, ref.at(p + "kl_full_grad"), 1e-5, "kl_full gradient");

    g = grad_of([&](const at::Tensor& lt) { return loss::anchor_loss(lt, c.logits_ref, c.S, c.valid); },
                c.logits_theta, &val);
    expect_close(val, ref.at(p + "anchor").squeeze(), 1e-5, "anchor");
    expect_close(g, ref.at(p + "anchor_grad"), 1e-5, "anchor gradient");

    // safety_mass from the reference's S logits and log-sum-exps (what a cache holds);
    // the independent reference takes the whole rows.
    const double T = c.o.temperature;
    loss::SafetyMassResult sm;
    g = grad_of(
        [&](const at::Tensor& lt) {
          sm = loss::safety_mass_loss(lt, c.S, c.z_full, (c.logits_ref / T).logsumexp(1),
                                      c.logits_post.index_select(1, c.S), (c.logits_post / T).logsumexp(1), c.t,
                                      c.valid, c.o);
          return sm.loss;
        },
        c.logits_theta, &val);
    expect_close(val, ref.at(p + "safety_mass").squeeze(), 1e-5, "safety_mass");
    expect_close(g, ref.at(p + "safety_mass_grad"), 1e-5, "safety_mass gradient");
    expect_close(sm.mass_term, ref.at(p + "safety_mass_mass").squeeze(), 1e-5, "safety_mass mass term");
    expect_close(sm.shape_term, ref.at(p + "safety_mass_shape").squeeze(), 1e-5, "safety_mass shape term");
  }
  // The random cases exercise the gate (not everything 0 or 1).
  EXPECT_GT(max_gate, 0.05);
}

TEST(Constraints, ZeroWhenModelEqualsReference) {
  at::manual_seed(3);
  const int64_t N = 9, V = 30, K = 6;
  at::Tensor logits = at::randn({N, V}) * 2;
  at::Tensor S = at::arange(K, at::kLong) * 4;
  at::Tensor z = logits.index_select(1, S);
  at::Tensor t = at::arange(N, at::kLong), valid = at::ones({N}, at::kBool);
  at::Tensor val;
  at::Tensor g = grad_of([&](const at::Tensor& lt) { return loss::kl_full_loss(lt, logits, valid, 2.0); }, logits, &val);
  EXPECT_NEAR(val.item<double>(), 0.0, 1e-6);
  EXPECT_LE(g.abs().max().item<double>(), 1e-6);
  g = grad_of([&](const at::Tensor& lt) { return loss::anchor_loss(lt, logits, S, valid); }, logits, &val);
  EXPECT_NEAR(val.item<double>(), 0.0, 1e-9);
  EXPECT_LE(g.abs().max().item<double>(), 1e-9);
  // pact's target is the reference re-weighted by w and renormalised, so it equals the
  // model's own distribution on S (loss 0) when w is uniform; the gate mixes z_full and
  // z_post, which both equal the model here.
  at::Tensor w = at::full({K}, 0.4);
  for (const char* mix : {"gated", "full", "post"}) {
    loss::ConstraintOptions o;
    o.reference_mix = *loss::parse_name<loss::ReferenceMix>(mix);
    g = grad_of([&](const at::Tensor& zt) { return loss::pact_loss(zt, z, z, w, t, valid, o).loss; }, z, &val);
    EXPECT_NEAR(val.item<double>(), 0.0, 1e-6) << mix;
    EXPECT_LE(g.abs().max().item<double>(), 1e-6) << mix;
  }
  // With non-uniform weights the loss at model == reference is the KL of the re-weighted
  // target from the model: positive.
  at::Tensor w2 = at::tensor({1.0f, 0.f, 0.3f, 0.f, 2.f, 0.1f});
  loss::ConstraintOptions o;
  EXPECT_GT(loss::pact_loss(z, z, z, w2, t, valid, o).loss.item<double>(), 1e-3);
}

TEST(Constraints, GateOffIsWeightedSubsetKl) {
  at::manual_seed(4);
  const int64_t N = 11, K = 7;
  at::Tensor zt = at::randn({N, K}), zf = at::randn({N, K}), zp = at::randn({N, K}) * 3;
  at::Tensor w = at::rand({K}), t = at::arange(N, at::kLong), valid = at::rand({N}) > 0.3;
  train::ObjectiveConfig cfg;
  cfg.gate.enabled = false;
  loss::ConstraintOptions o = train::constraint_options(cfg);
  EXPECT_EQ(o.reference_mix, loss::ReferenceMix::full);
  EXPECT_DOUBLE_EQ(o.temperature, 2.0);
  auto r = loss::pact_loss(zt, zf, zp, w, t, valid, o);
  EXPECT_NEAR(r.loss.item<double>(), loss::weighted_subset_kl(zt, zf, w, valid, 2.0).item<double>(), 1e-7);
  EXPECT_EQ(r.gate_mean.item<double>(), 0.0);
  // ... and is the plain formula written out.
  at::Tensor q = at::softmax(zf / 2, -1) * w;
  q = q / q.sum(-1, true);
  at::Tensor kl = (q * (q.log() - at::log_softmax(zt / 2, -1))).sum(-1);
  double want = 4.0 * kl.masked_select(valid).mean().item<double>();
  EXPECT_NEAR(r.loss.item<double>(), want, 1e-5);
}

TEST(Constraints, TopPSpreadAndPositions) {
  // softmax of log([0.5, 0.3, 0.15, 0.05]): 0.5 + 0.3 < 0.9 <= 0.95 -> k_p = 3 of 4.
  at::Tensor z = at::tensor({0.5, 0.3, 0.15, 0.05}, at::kDouble).log().view({1, 4});
  EXPECT_DOUBLE_EQ(loss::topp_spread(z, 0.9, 1.0).item<double>(), 0.75);
  EXPECT_DOUBLE_EQ(loss::topp_spread(z, 0.45, 1.0).item<double>(), 0.25);
  at::Tensor flat = at::zeros({1, 8});  // 7 x 0.125 < 0.9: all 8 are needed
  EXPECT_DOUBLE_EQ(loss::topp_spread(flat, 0.9, 1.0).item<double>(), 1.0);

  loss::ConstraintOptions o;
  at::Tensor t = at::arange(6, at::kLong), valid = at::tensor({1, 1, 0, 1, 1, 1}).to(at::kBool);
  EXPECT_TRUE(loss::select_positions(o, t, valid).equal(valid));
  o.positions = loss::Positions::first_n;
  o.first_n = 4;
  EXPECT_TRUE(loss::select_positions(o, t, valid).equal(at::tensor({1, 1, 0, 1, 0, 0}).to(at::kBool)));
  o.positions = loss::Positions::probe;
  o.probe_tau = 0.5;
  // Reference mass on S = {0}: row 0 all on token 0, others spread evenly over 4.
  at::Tensor logits = at::zeros({6, 4});
  logits[0][0] = 50;
  logits[4][0] = 50;
  at::Tensor mass = loss::mass_on_subset(logits, at::tensor({0}, at::kLong));
  EXPECT_NEAR(mass[1].item<double>(), 0.25, 1e-6);
  EXPECT_TRUE(loss::select_positions(o, t, valid, mass).equal(at::tensor({1, 0, 0, 0, 1, 0}).to(at::kBool)));

  // safety_start: whole examples, by the mass at their first response position. Three
  // examples in row order 2, 0, 2, 1, 0, 1 (as a batch's response positions may come);
  // example 0 starts at mass 0.9, example 1 at 0.2 (then 0.95), example 2 at 0.5 (= tau).
  o.positions = loss::Positions::safety_start;
  const at::Tensor example = at::tensor({2, 0, 2, 1, 0, 1}, at::kLong);
  const at::Tensor pos = at::tensor({0, 0, 1, 1, 1, 0}, at::kLong);
  const at::Tensor start_mass = at::tensor({0.5f, 0.9f, 0.0f, 0.95f, 0.1f, 0.2f});
  const at::Tensor all = at::ones({6}, at::kBool);
  EXPECT_TRUE(loss::select_positions(o, pos, all, start_mass, example).equal(at::tensor({1, 1, 1, 0, 1, 0}).to(at::kBool)));
  // `valid` still restricts, and an example whose first position is missing is left out.
  EXPECT_TRUE(loss::select_positions(o, pos, valid, start_mass, example).equal(at::tensor({1, 1, 0, 0, 1, 0}).to(at::kBool)));
  const at::Tensor no_start = at::tensor({1, 1, 1, 1, 1, 1}, at::kLong);
  EXPECT_FALSE(loss::select_positions(o, no_start, all, start_mass, example).any().item<bool>());
  EXPECT_THROW(loss::select_positions(o, pos, all, start_mass), c10::Error);
}

TEST(Constraints, ResponsePositionsOfABatch) {
  data::Batch b;
  b.response_start = at::tensor({3, 2}, at::kLong);
  b.lengths = at::tensor({5, 5}, at::kLong);
  b.post_response_start = at::tensor({2, 2}, at::kLong);
  auto p = loss::response_positions(b);
  EXPECT_TRUE(p.rows.equal(at::tensor({0, 0, 1, 1, 1}, at::kLong)));
  EXPECT_TRUE(p.cols.equal(at::tensor({2, 3, 1, 2, 3}, at::kLong)));
  EXPECT_TRUE(p.post_cols.equal(at::tensor({1, 2, 1, 2, 3}, at::kLong)));
  EXPECT_TRUE(p.t.equal(at::tensor({0, 1, 0, 1, 2}, at::kLong)));
}

TEST(SafetyTokens, AggregationMatchesIndependentReference) {
  if (!test_util::python_has("torch, numpy")) GTEST_FAIL() << test_util::python_missing("torch, numpy");
  for (const char* mode : {"p_diff", "pref_logratio"}) {
    SCOPED_TRACE(mode);
    at::manual_seed(mode[1] == '_' ? 5 : 6);
    const int64_t V = 30, topk = 8;
    const double tau = 1.5;
    safety::DirectionAccumulator acc(V, mode, tau);
    std::vector<std::pair<std::string, at::Tensor>> in;
    int i = 0;
    for (int64_t R : {3, 1, 5, 2}) {
      at::Tensor la = at::randn({R, V}) * 2, lb = at::randn({R, V}) * 2;
      acc.add(la, lb);
      in.emplace_back("la." + std::to_string(i), la);
      in.emplace_back("lb." + std::to_string(i), lb);
      ++i;
    }
    auto ref = run_reference("step1", temp_dir(std::string("step1_") + mode), in,
                             {{"mode", mode}, {"tau", "1.5"}, {"topk", std::to_string(topk)}});
    ASSERT_FALSE(ref.empty());
    expect_close(acc.mean_diff(), ref.at("d"), 1e-6, "d");
    expect_close(acc.mean_prob(), ref.at("pbar"), 1e-6, "pbar");
    auto toks = acc.finish(topk);
    ASSERT_EQ(static_cast<int64_t>(toks.size()), topk);
    for (int64_t k = 0; k < topk; ++k) {
      EXPECT_EQ(toks[k].id, ref.at("S")[k].item<int64_t>()) << "rank " << k;
      // The reference's outputs are stored as F32.
      EXPECT_NEAR(toks[k].diff, ref.at("raw")[k].item<double>(), 1e-6);
      EXPECT_NEAR(toks[k].weight, ref.at("v")[k].item<double>(), 1e-6);
    }
    EXPECT_EQ(acc.examples(), 4);
    EXPECT_EQ(acc.positions(), 11);
  }
}

TEST(SafetyTokens, FileRoundTripAndVocabularyCheck) {
  safety::SafetyTokens t;
  t.aligned_path = "a";
  t.probe_path = "b";
  t.aligned_hash = "00";
  t.probe_hash = "11";
  t.vocab_size = 300;
  t.num_examples = 2;
  t.num_positions = 7;
  t.tokens = {{5, "I", 0.8, 0.1, 0.05}, {17, "\n\x01", -0.6, 0.05, -0.01}};
  const fs::path d = temp_dir("file");
  const std::string path = (d / "tokens.json").string();
  safety::write_safety_tokens(path, t);
  safety::SafetyTokens r = safety::read_safety_tokens(path);
  EXPECT_EQ(r.vocab_size, 300);
  ASSERT_EQ(r.tokens.size(), 2u);
  EXPECT_EQ(r.tokens[1].piece, "\n\x01");
  EXPECT_DOUBLE_EQ(r.tokens[0].weight, 0.8);
  EXPECT_TRUE(r.ids().equal(at::tensor({5, 17}, at::kLong)));
  EXPECT_TRUE(r.weights().equal(at::tensor({0.8f, 0.f})));
  fs::remove_all(d);
  safety::validate_safety_tokens(r, path, 300);
  try {
    safety::validate_safety_tokens(r, path, 512);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tokens.json was made for vocabulary of 300, model has 512"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(safety::escape_piece("a\nb\x01"), "a\\nb\\x01");
}
