// Inputs the fuzzers (tests/fuzz/) found crashing or fooling a parser, replayed through the
// normal build. Each file in tests/fuzz/regressions/ is named <target>-<what>.<ext>, the
// target saying which parser reads it; every one must now be a clean InputError (the CLI's
// one-line message and exit code 2), never a crash or another exception.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/data/records.h"
#include "safetune/io/hf_config.h"
#include "safetune/io/safetensors.h"
#include "safetune/text/bpe_tokenizer.h"
#include "safetune/train/config.h"

using namespace safetune;
namespace fs = std::filesystem;

namespace {

const fs::path kDir = fs::path(SAFETUNE_SOURCE_DIR) / "tests" / "fuzz" / "regressions";

// The same reading as the fuzz target of that name (the file is the fuzzer's input).
const std::map<std::string, std::function<void(const std::string& path, const std::string& bytes)>> kReaders = {
    {"safetensors",
     [](const std::string& path, const std::string& bytes) {
       // Both ways in: the memory-mapped file and an in-memory buffer.
       EXPECT_THROW(io::SafetensorsFile{path}, InputError);
       io::SafetensorsFile::from_buffer(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
     }},
    {"hf_config", [](const std::string& path, const std::string& bytes) { io::parse_hf_config(bytes, path); }},
    {"tokenizer_json",
     [](const std::string& path, const std::string& bytes) { text::parse_tokenizer_json(bytes, path); }},
    {"records", [](const std::string& path, const std::string& bytes) { data::parse_records(bytes, path); }},
    {"csv",
     [](const std::string& path, const std::string& bytes) {
       // The first byte is tests/fuzz/fuzz_csv.cpp's mode: bit 1 the goal,target mapping,
       // bit 2 prompts (bit 0, TSV, is the file's extension here: csv-<what>.tsv).
       const uint8_t mode = bytes.empty() ? 0 : static_cast<uint8_t>(bytes[0]);
       const std::string text = bytes.empty() ? "" : bytes.substr(1);
       data::ColumnMap columns;
       if (mode & 2) columns = {{"instruction", "goal"}, {"output", "target"}};
       if (mode & 4) data::parse_prompt_records(text, path, columns);
       else data::parse_records(text, path, columns);
     }},
    {"yaml_config",
     [](const std::string& path, const std::string& bytes) {
       // YAML, then optionally a NUL byte and one key=value override per line (split as
       // tests/fuzz/fuzz_yaml_config.cpp does).
       const size_t nul = bytes.find('\0');
       std::vector<std::string> overrides;
       if (nul != std::string::npos) {
         size_t pos = nul + 1;
         while (pos <= bytes.size() && overrides.size() < 16) {
           const size_t end = std::min(bytes.find('\n', pos), bytes.size());
           overrides.push_back(bytes.substr(pos, end - pos));
           pos = end + 1;
         }
       }
       train::parse_run_config(bytes.substr(0, nul), path, overrides);
     }},
};

std::vector<fs::path> regression_files() {
  std::vector<fs::path> files;
  if (fs::is_directory(kDir))
    for (const auto& e : fs::directory_iterator(kDir))
      if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST(FuzzRegressions, EveryFileNamesAKnownParser) {
  const auto files = regression_files();
  ASSERT_FALSE(files.empty()) << "no files in " << kDir;
  for (const fs::path& p : files) {
    const std::string name = p.filename().string();
    EXPECT_TRUE(kReaders.count(name.substr(0, name.find('-')))) << name << ": expected <target>-<what>.<ext>";
  }
}

TEST(FuzzRegressions, EachIsACleanInputError) {
  for (const fs::path& p : regression_files()) {
    const std::string name = p.filename().string();
    auto reader = kReaders.find(name.substr(0, name.find('-')));
    if (reader == kReaders.end()) continue;  // reported by the test above
    SCOPED_TRACE(name);
    const std::string bytes = read_file(p.string());
    std::string message;
    try {
      reader->second(p.string(), bytes);
      ADD_FAILURE() << "accepted";
    } catch (const InputError& e) {
      message = e.what();
    }
    // A message that names the input, fit for the CLI's one error line.
    EXPECT_NE(message.find(name), std::string::npos) << message;
  }
}
