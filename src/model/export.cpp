// Atomic HF model directories.
#include "safetune/model/export.h"

#include <filesystem>
#include <unistd.h>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/model/load.h"
#include "safetune/model/transformer.h"

namespace safetune::model {
namespace fs = std::filesystem;

const std::vector<std::string>& tokenizer_file_names() {
  static const std::vector<std::string> names = {
      "tokenizer.json",          "tokenizer.model",    "tokenizer_config.json", "special_tokens_map.json",
      "added_tokens.json",       "vocab.json",         "merges.txt",            "chat_template.jinja",
      "generation_config.json"};
  return names;
}

int copy_tokenizer_files(const std::string& src_dir, const std::string& dst_dir) {
  int n = 0;
  for (const std::string& name : tokenizer_file_names()) {
    const fs::path src = fs::path(src_dir) / name;
    if (!fs::is_regular_file(src)) continue;
    fs::copy_file(src, fs::path(dst_dir) / name, fs::copy_options::overwrite_existing);
    ++n;
  }
  return n;
}

void write_model_dir(const std::string& out_dir, const Transformer& model, const std::string& src_dir,
                     at::ScalarType stored, bool replace) {
  fs::path out = fs::path(out_dir);
  if (out.filename().empty()) out = out.parent_path();  // "dir/" -> "dir"
  if (fs::exists(out) && !replace) input_error(out.string(), "already exists (remove it or choose another --out)");
  if (!out.parent_path().empty()) fs::create_directories(out.parent_path());
  const fs::path tmp = out.string() + ".tmp." + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    save_model(tmp.string(), model, stored);
    copy_tokenizer_files(src_dir, tmp.string());
    replace_dir(tmp.string(), out.string());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace safetune::model
