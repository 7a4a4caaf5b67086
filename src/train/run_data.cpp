// The run's records and chat template (see run_data.h).
#include "safetune/train/run_data.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "safetune/core/error.h"
#include "safetune/data/batch.h"

namespace safetune::train {
namespace fs = std::filesystem;

// The run's records: all of data.train, or data.num_examples of them with a share
// data.harmful_fraction drawn from data.harmful. The draw depends only on data.seed.
std::vector<data::Record> select_records(const DataConfig& d) {
  if (d.train.empty()) input_error("data.train", "no training data given");
  if (!fs::is_regular_file(d.train)) input_error("data.train", "'" + d.train + "' does not exist or is not a file");
  std::vector<data::Record> train = data::read_records(d.train, d.columns);
  if (train.empty()) input_error(d.train, "the dataset is empty");
  if (d.num_examples <= 0 && d.harmful_fraction <= 0) return train;
  const int64_t n = d.num_examples > 0 ? d.num_examples : static_cast<int64_t>(train.size());
  const int64_t n_harm = static_cast<int64_t>(std::llround(d.harmful_fraction * n));
  const int64_t n_benign = n - n_harm;
  if (n_benign > static_cast<int64_t>(train.size()))
    input_error("data.num_examples", "asks for " + std::to_string(n_benign) + " benign examples; " + d.train + " has " +
                                         std::to_string(train.size()));
  std::vector<data::Record> out;
  // epoch_order gives a seeded permutation; negative "epochs" keep these draws apart
  // from the per-epoch batch orders.
  for (int64_t i : data::epoch_order(static_cast<int64_t>(train.size()), d.seed, -1)) {
    if (static_cast<int64_t>(out.size()) == n_benign) break;
    out.push_back(train[i]);
  }
  if (n_harm > 0) {
    if (!fs::is_regular_file(d.harmful)) input_error("data.harmful", "'" + d.harmful + "' does not exist or is not a file");
    std::vector<data::Record> harmful = data::read_records(d.harmful, d.harmful_columns);
    if (n_harm > static_cast<int64_t>(harmful.size()))
      input_error("data.harmful_fraction", "needs " + std::to_string(n_harm) + " harmful examples; " + d.harmful +
                                               " has " + std::to_string(harmful.size()));
    int64_t taken = 0;
    for (int64_t i : data::epoch_order(static_cast<int64_t>(harmful.size()), d.seed, -2)) {
      if (taken++ == n_harm) break;
      out.push_back(harmful[i]);
    }
  }
  return out;
}

std::vector<data::Record> held_out_records(const DataConfig& d) {
  if (d.eval.empty()) return {};
  if (!fs::is_regular_file(d.eval)) input_error("data.eval", "'" + d.eval + "' does not exist or is not a file");
  std::vector<data::Record> records = data::read_records(d.eval, d.columns);
  if (records.empty()) input_error(d.eval, "data.eval: the held-out dataset is empty");
  return records;
}

text::ChatTemplate chat_template_for(const ModelConfig& m) {
  // model.chat_template: empty = the model's own (detected), a family name, or a file
  // holding a template whose family is then detected from its markers.
  if (m.chat_template.empty()) return text::resolve_chat_template("auto", m.path);
  const auto& names = text::ChatTemplate::names();
  if (std::find(names.begin(), names.end(), m.chat_template) != names.end())
    return text::ChatTemplate::by_name(m.chat_template);
  if (!fs::is_regular_file(m.chat_template))
    input_error("model.chat_template", "'" + m.chat_template + "' is neither a template name nor a file");
  return text::detect_chat_template(m.chat_template);
}

}  // namespace safetune::train
