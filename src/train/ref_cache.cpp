// Reference cache: build and load (see ref_cache.h).
#include "safetune/train/ref_cache.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <filesystem>
#include <optional>

#include "safetune/core/device.h"
#include "safetune/core/dir_lock.h"
#include "safetune/core/error.h"
#include "safetune/core/hash.h"
#include "safetune/core/threads.h"
#include "safetune/data/batch.h"
#include "safetune/io/safetensors.h"
#include "safetune/io/tensor_io.h"
#include "safetune/loss/constraints.h"
#include "safetune/model/load.h"
#include "safetune/safety/safety_tokens.h"
#include "safetune/text/tokenizer.h"
#include "safetune/train/reference.h"
#include "safetune/train/run_data.h"
#include "safetune/train/setup.h"

namespace safetune::train {
namespace fs = std::filesystem;

namespace {
// v2 added each row's log-sum-exp over the vocabulary (lse_full, lse_post, fp64) at the
// temperature in the metadata's lse_temperature. A v1 cache still serves the constraints
// that need no log-sum-exp.
constexpr const char* kFormat = "safetune.ref_cache.v2";
constexpr const char* kFormatWithoutLse = "safetune.ref_cache.v1";

std::string file_hash_or_none(const std::string& path) {
  return fs::is_regular_file(path) ? sha256_file(path) : std::string("-");
}
}  // namespace

std::map<std::string, std::string> RefCacheHashes::as_metadata() const {
  return {{"model_hash", model}, {"data_hash", data}, {"tokenizer_hash", tokenizer}, {"tokens_hash", tokens}};
}

RefCacheHashes ref_cache_hashes(const RunConfig& cfg) {
  RefCacheHashes h;
  // Each hash is the sha256 of a small text listing its inputs (file hashes and settings),
  // so that any one of them changing changes it.
  // A GPU computes in other precisions (bf16 with model.dtype = auto): its cache is not the
  // CPU's. (CPU runs keep the hash they always had.)
  const bool gpu = resolve_device(cfg.train.device).is_cuda();
  h.model = sha256_hex("model " + safety::model_hash(cfg.model.path) + "\ndtype " + name_of(cfg.model.dtype) + "\n" +
                               (gpu ? "device cuda\n" : ""));
  const DataConfig& d = cfg.data;
  if (d.train.empty() || !fs::is_regular_file(d.train))
    input_error("data.train", "'" + d.train + "' does not exist or is not a file");
  std::string dt = "train " + sha256_file(d.train) + "\n";
  if (d.harmful_fraction > 0) {
    if (!fs::is_regular_file(d.harmful)) input_error("data.harmful", "'" + d.harmful + "' does not exist or is not a file");
    dt += "harmful " + sha256_file(d.harmful) + "\n";
  }
  dt += "num_examples " + std::to_string(d.num_examples) + "\nharmful_fraction " + std::to_string(d.harmful_fraction) +
        "\nseed " + std::to_string(d.seed) + "\n";
  h.data = sha256_hex(dt);
  std::string tt;
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
    tt += std::string(f) + " " + file_hash_or_none((fs::path(cfg.model.path) / f).string()) + "\n";
  tt += "chat_template " + cfg.model.chat_template + " " + file_hash_or_none(cfg.model.chat_template) + "\n";
  tt += "max_length " + std::to_string(d.max_length) + "\n";
  h.tokenizer = sha256_hex(tt);
  if (!fs::is_regular_file(cfg.objective.tokens))
    input_error("objective.tokens", "'" + cfg.objective.tokens + "' does not exist or is not a file");
  h.tokens = sha256_file(cfg.objective.tokens);
  return h;
}

RefCacheInfo build_ref_cache(const RunConfig& cfg, const std::string& out,
                             const std::function<void(int64_t, int64_t)>& progress) {
  validate(cfg);
  // --out inside a run directory (this config's train.output_dir, or one a run has
  // locked): hold its lock while writing there, as `train` does, so that neither writes
  // under the other.
  DirLock lock;
  const fs::path out_dir = fs::path(out).parent_path().empty() ? fs::path(".") : fs::path(out).parent_path();
  std::error_code ec;
  if (fs::is_directory(out_dir, ec) &&
      (fs::exists(lock_file_of(out_dir.string()), ec) || fs::equivalent(out_dir, cfg.train.output_dir, ec)))
    lock = DirLock::acquire(out_dir.string(), "--out");
  set_compute_threads(static_cast<int>(cfg.train.threads));
  if (cfg.model.path.empty() || !fs::is_directory(cfg.model.path))
    input_error("model.path", "'" + cfg.model.path + "' is not a model directory");
  if (cfg.objective.tokens.empty())
    input_error("objective.tokens", "ref-cache needs objective.tokens (tokens.json from `safetune tokens`)");
  const c10::Device device = resolve_device(cfg.train.device);  // before anything heavy
  const RefCacheHashes hashes = ref_cache_hashes(cfg);
  std::vector<data::Record> records = select_records(cfg.data);

  model::LoadedModel loaded = load_run_model(cfg, device);
  model::Transformer& m = *loaded.model;
  for (auto& p : m.parameters()) p.set_requires_grad(false);
  std::unique_ptr<text::Tokenizer> tok = text::load_tokenizer(cfg.model.path);
  safety::SafetyTokens st = safety::read_safety_tokens(cfg.objective.tokens);
  safety::validate_safety_tokens(st, cfg.objective.tokens, m.config().vocab_size, tok.get(), cfg.model.path);
  const at::Tensor S = st.ids();
  const text::ChatTemplate tmpl = chat_template_for(cfg.model);
  std::vector<data::Example> examples = data::tokenize_records(records, *tok, tmpl, cfg.data.max_length);
  const int64_t E = static_cast<int64_t>(examples.size());
  const int32_t pad = data::pad_id_for(*tok);

  ReferenceRequest req;
  req.post = true;  // every reference_mix can be served
  req.mass = true;  // positions = probe and safety_start too
  req.lse = true;   // safety_mass, at the config's temperature
  req.lse_temperature = cfg.objective.temperature;
  std::vector<at::Tensor> zf, zp, ms, lf, lp;
  std::vector<int64_t> offsets{0};
  const int64_t bs = std::max<int64_t>(1, cfg.train.batch_size);
  for (int64_t i0 = 0; i0 < E; i0 += bs) {
    std::vector<const data::Example*> rows;
    for (int64_t i = i0; i < std::min(E, i0 + bs); ++i) rows.push_back(&examples[i]);
    data::Batch b = data::to_device(data::collate(rows, pad), device);
    const loss::ResponsePositions P = loss::response_positions(b);
    ReferenceLogits r = reference_pass(m, b, P, S, req);
    zf.push_back(r.z_full.to(at::kCPU));
    zp.push_back(r.z_post.to(at::kCPU));
    ms.push_back(r.mass.to(at::kCPU));
    lf.push_back(r.lse_full.to(at::kCPU));
    lp.push_back(r.lse_post.to(at::kCPU));
    const at::Tensor rs = b.response_start.to(at::kCPU, at::kLong), len = b.lengths.to(at::kCPU, at::kLong);
    for (size_t k = 0; k < rows.size(); ++k)
      offsets.push_back(offsets.back() + len[k].item<int64_t>() - rs[k].item<int64_t>());
    if (progress) progress(std::min(E, i0 + bs), E);
  }
  const int64_t K = S.numel();
  at::Tensor z_full = zf.empty() ? at::empty({0, K}, at::kFloat) : at::cat(zf, 0).contiguous();
  at::Tensor z_post = zp.empty() ? at::empty({0, K}, at::kFloat) : at::cat(zp, 0).contiguous();
  at::Tensor mass = ms.empty() ? at::empty({0}, at::kFloat) : at::cat(ms, 0).contiguous();
  at::Tensor lse_full = lf.empty() ? at::empty({0}, at::kDouble) : at::cat(lf, 0).contiguous();
  at::Tensor lse_post = lp.empty() ? at::empty({0}, at::kDouble) : at::cat(lp, 0).contiguous();
  std::map<std::string, std::string> meta = hashes.as_metadata();
  meta["format"] = kFormat;
  meta["examples"] = std::to_string(E);
  meta["model_path"] = cfg.model.path;
  meta["dtype"] = "F32";
  meta["lse_temperature"] = std::to_string(cfg.objective.temperature);
  io::save_tensors(out,
                   {{"offsets", at::tensor(offsets, at::kLong)},
                    {"z_full", z_full},
                    {"z_post", z_post},
                    {"mass", mass},
                    {"lse_full", lse_full},
                    {"lse_post", lse_post},
                    {"S", S.contiguous()}},
                   meta);
  return RefCacheInfo{E, z_full.size(0), K};
}

std::unique_ptr<Reference> load_ref_cache(const RunConfig& cfg, const at::Tensor& S) {
  const std::string& path = cfg.objective.ref_cache;
  if (!fs::is_regular_file(path)) input_error("objective.ref_cache", "'" + path + "' does not exist or is not a file");
  std::map<std::string, std::string> meta;
  {
    io::SafetensorsFile f(path);
    meta = f.metadata();
  }
  auto get = [&](const std::string& k) {
    auto it = meta.find(k);
    return it == meta.end() ? std::string() : it->second;
  };
  const bool has_lse = get("format") == kFormat;
  if (!has_lse && get("format") != kFormatWithoutLse)
    input_error(path, "not a reference cache (metadata format is '" + get("format") + "', expected " + kFormat + ")");
  const std::string& kind = loss::name_of(cfg.objective.constraint);
  const bool needs_lse = loss::descriptor_of(cfg.objective.constraint).needs_reference_lse;
  if (needs_lse && !has_lse)
    input_error(path, "reference cache format " + get("format") + " lacks the log-sum-exps that objective.constraint = " +
                          kind + " needs; rebuild it with `safetune ref-cache`");
  if (needs_lse && std::to_string(cfg.objective.temperature) != get("lse_temperature"))
    input_error(path, "the cache's log-sum-exps are at temperature " + get("lse_temperature") +
                          ", objective.temperature is " + std::to_string(cfg.objective.temperature) +
                          "; rebuild it with `safetune ref-cache` at this temperature");
  const RefCacheHashes now = ref_cache_hashes(cfg);
  const char* what[] = {"model_hash", "data_hash", "tokenizer_hash", "tokens_hash"};
  const char* about[] = {"the model (model.path / model.dtype)",
                         "the dataset (data.train / data.harmful and the record selection)",
                         "the tokenizer, chat template or data.max_length", "tokens.json (objective.tokens)"};
  const std::map<std::string, std::string> cur = now.as_metadata();
  for (int i = 0; i < 4; ++i) {
    const std::string have = get(what[i]), want = cur.at(what[i]);
    if (have != want)
      input_error(path, std::string("stale reference cache: ") + what[i] + " differs (cache " +
                            (have.empty() ? std::string("none") : have.substr(0, 12)) + "..., now " + want.substr(0, 12) +
                            "...): " + about[i] + " changed since `safetune ref-cache`; rebuild it");
  }
  std::map<std::string, at::Tensor> t = io::load_tensors(path);
  for (const char* name : {"offsets", "z_full", "z_post", "mass", "S"})
    if (!t.count(name)) input_error(path, std::string("missing tensor '") + name + "'");
  if (has_lse)
    for (const char* name : {"lse_full", "lse_post"})
      if (!t.count(name)) input_error(path, std::string("missing tensor '") + name + "'");
  if (!t.at("S").to(at::kLong).equal(S.to(at::kCPU, at::kLong)))
    input_error(path, "the cache's safety-token columns differ from objective.tokens");
  const at::Tensor& off = t.at("offsets");
  const int64_t N = t.at("z_full").size(0);
  if (off.dim() != 1 || off.numel() < 1 || off[-1].item<int64_t>() != N || t.at("z_post").size(0) != N ||
      t.at("mass").numel() != N || t.at("z_full").size(1) != S.numel() ||
      (has_lse && (t.at("lse_full").numel() != N || t.at("lse_post").numel() != N)))
    input_error(path, "inconsistent tensor shapes");
  if (!has_lse) return memory_reference(off, t.at("z_full"), t.at("z_post"), t.at("mass"), path);
  return memory_reference(off, t.at("z_full"), t.at("z_post"), t.at("mass"), path, t.at("lse_full"), t.at("lse_post"));
}

}  // namespace safetune::train
