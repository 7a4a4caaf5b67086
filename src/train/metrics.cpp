// metrics.jsonl writer.
#include "safetune/train/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"

namespace safetune::train {
using nlohmann::json;

namespace {
json num(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }  // JSON has no NaN
}  // namespace

std::vector<std::pair<std::string, double>> StepLoss::terms() const {
  std::vector<std::pair<std::string, double>> out;
  if (known != Known::all) return out;
  out.emplace_back("ce", ce);
  if (kind == loss::ConstraintKind::none) return out;
  out.emplace_back(loss::name_of(kind), constraint);
  const std::vector<std::string>& names = loss::descriptor_of(kind).metric_terms;
  for (size_t i = 0; i < parts.size() && i < names.size(); ++i) out.emplace_back(names[i], parts[i]);
  return out;
}

std::vector<double> StepLoss::flat() const {
  if (known == Known::nothing) return {};
  std::vector<double> out = {total};
  if (known == Known::total) return out;
  out.push_back(ce);
  if (kind != loss::ConstraintKind::none) out.push_back(constraint);
  out.insert(out.end(), parts.begin(), parts.end());
  return out;
}

StepLoss StepLoss::from_flat(loss::ConstraintKind kind, const std::vector<double>& flat) {
  StepLoss s;
  s.kind = kind;
  if (flat.empty()) return s;
  s.total = flat[0];
  s.known = flat.size() == 1 ? Known::total : Known::all;
  if (s.known == Known::total) return s;
  s.ce = flat[1];
  const size_t first_part = kind == loss::ConstraintKind::none ? 2 : 3;
  if (first_part == 3 && flat.size() > 2) s.constraint = flat[2];
  if (flat.size() > first_part) s.parts.assign(flat.begin() + static_cast<std::ptrdiff_t>(first_part), flat.end());
  return s;
}

std::string metrics_json(const StepMetrics& m) {
  json loss = json::object();
  for (const auto& [k, v] : m.loss.terms()) loss[k] = num(v);
  if (m.loss.known != StepLoss::Known::nothing) loss["total"] = num(m.loss.total);
  json j = {{"step", m.step},           {"epoch", m.epoch},           {"loss", loss},
            {"lr", num(m.lr)},          {"grad_norm", num(m.grad_norm)}, {"tokens", m.tokens},
            {"tokens_per_s", num(m.tokens_per_s)}, {"elapsed_s", num(m.elapsed_s)},
            {"peak_mem_mb", m.peak_mem_mb >= 0 ? num(m.peak_mem_mb) : json(nullptr)}};
  return j.dump();
}

std::string eval_metrics_json(const EvalMetrics& m) {
  json metrics = json::object();
  for (const auto& [k, v] : m.metrics) metrics[k] = num(v);
  json j = {{"kind", "eval"}, {"step", m.step}, {"epoch", m.epoch}, {"metrics", metrics}, {"eval_s", num(m.eval_s)}};
  return j.dump();
}

MetricsLog::MetricsLog(const std::string& path, int64_t keep_up_to_step) : path_(path) {
  // A resumed run keeps the records up to its checkpoint (later ones will be logged again);
  // the kept part is rewritten atomically before appending.
  std::string kept;
  if (keep_up_to_step >= 0 && path_exists(path)) {
    std::istringstream in(read_file(path));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      try {
        if (json::parse(line).at("step").get<int64_t>() <= keep_up_to_step) kept += line + "\n";
      } catch (const json::exception&) {
        // a torn last line of a killed run: dropped
      }
    }
  }
  write_file_atomic(path, kept);
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) io_error(path, "cannot open for appending", errno);
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const StepMetrics& m) { write_line(metrics_json(m) + "\n"); }

void MetricsLog::write(const EvalMetrics& m) { write_line(eval_metrics_json(m) + "\n"); }

void MetricsLog::write_line(const std::string& line) {
  const bool written = std::fwrite(line.data(), 1, line.size(), f_) == line.size();
  if (std::fflush(f_) != 0 || !written) environment_error(path_, std::string("write failed: ") + std::strerror(errno));
}

}  // namespace safetune::train
