// Content-addressed pipeline stages: a stage's directory is named by a hash of
// everything that determines its output (its name, its options, and the keys of the
// stages it reads), so a rerun finds the finished directory and skips the work, and a
// changed option or input gets a new key and is redone, with everything after it.
//
// A stage is built in a temporary directory beside its final place and renamed into
// place only when complete, with stage.json (name, key, inputs, seconds it took) written
// last inside it: an interrupted run leaves no directory that looks finished.
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace safetune::demo {

struct Stage {
  std::string name;
  std::string key;      // sha256 hex of the stage's inputs
  std::string dir;      // root/<name>-<first 12 hex digits of key>
  bool cached = false;  // found finished, not rebuilt
  double seconds = 0;   // what building it took (when it was built, for a cached stage)
};

class StageCache {
 public:
  // `root` is created when missing. `salt` goes into every key (the program's version and
  // the pipeline's revision, so a changed pipeline never reuses an old result).
  StageCache(std::string root, std::string salt);

  // The key of a stage from its name and inputs (options and input stages' keys).
  std::string key(const std::string& name, const nlohmann::json& inputs) const;

  // Returns the finished stage, calling build(temp_dir) first unless it is cached. The
  // temporary directory exists and is empty when build starts; an exception from build
  // removes it and propagates.
  Stage run(const std::string& name, const nlohmann::json& inputs, const std::function<void(const std::string&)>& build);

 private:
  std::string root_, salt_;
};

}  // namespace safetune::demo
