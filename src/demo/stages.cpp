// Content-hash cached stages (see stages.h).
#include "safetune/demo/stages.h"

#include <chrono>
#include <filesystem>

#include "safetune/core/fs.h"
#include "safetune/core/hash.h"
#include "safetune/safety/safety_tokens.h"

namespace safetune::demo {
namespace fs = std::filesystem;

StageCache::StageCache(std::string root, std::string salt) : root_(std::move(root)), salt_(std::move(salt)) {
  ensure_output_dir(root_);
}

std::string StageCache::key(const std::string& name, const nlohmann::json& inputs) const {
  // nlohmann::json objects are ordered by key, so dump() is a canonical form.
  return sha256_hex(nlohmann::json{{"salt", salt_}, {"stage", name}, {"inputs", inputs}}.dump());
}

Stage StageCache::run(const std::string& name, const nlohmann::json& inputs,
                      const std::function<void(const std::string&)>& build) {
  Stage s;
  s.name = name;
  s.key = key(name, inputs);
  s.dir = (fs::path(root_) / (name + "-" + s.key.substr(0, 12))).string();
  const std::string marker = (fs::path(s.dir) / "stage.json").string();
  if (fs::is_regular_file(marker)) {
    const auto j = nlohmann::json::parse(read_file(marker), nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("key", "") == s.key) {
      s.cached = true;
      s.seconds = j.value("seconds", 0.0);
      return s;
    }
  }
  // A directory without a valid marker is debris of an older layout: rebuild it.
  const std::string tmp = s.dir + ".tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    build(tmp);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_file_atomic((fs::path(tmp) / "stage.json").string(),
                    nlohmann::json{{"name", name}, {"key", s.key}, {"inputs", inputs}, {"seconds", s.seconds}}.dump(2) +
                        "\n");
  fs::remove_all(s.dir, ec);
  fs::rename(tmp, s.dir);
  return s;
}

}  // namespace safetune::demo
