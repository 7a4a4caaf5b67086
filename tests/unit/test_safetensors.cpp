// Safetensors: round trip through the writer and the mmap reader, sharded checkpoints,
// and every header rule of the validator rejected with a message naming the problem.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/io/safetensors.h"
#include "safetune/io/tensor_io.h"
#include "test_util.h"

using namespace safetune;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const std::string& name) { return test_util::fresh_temp_dir("safetune_test_" + name); }

// Builds a raw safetensors file from a header string and a data size.
std::string raw_file(const std::string& header, size_t data_bytes, uint64_t claimed_len = UINT64_MAX) {
  uint64_t n = claimed_len == UINT64_MAX ? header.size() : claimed_len;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  out.append(data_bytes, '\0');
  return out;
}

// Expects the validator to reject `bytes` with a message containing `needle`.
void expect_rejected(const std::string& bytes, const std::string& needle) {
  try {
    io::SafetensorsFile::from_buffer(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "bad.safetensors");
    FAIL() << "accepted a corrupt file; expected an error containing '" << needle << "'";
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "error must be one line: " << msg;
  }
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtype) {
  const std::string dir = temp_dir("roundtrip");
  torch::manual_seed(0);
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f32", torch::randn({3, 5})},
      {"f16", torch::randn({4}).to(torch::kHalf)},
      {"bf16", torch::randn({2, 3}).to(torch::kBFloat16)},
      {"i64", torch::arange(7, torch::kLong)},
      {"i32", torch::arange(-3, 3, torch::kInt)},
      {"i16", torch::arange(5, torch::kShort)},
      {"i8", torch::arange(-4, 4, torch::kChar)},
      {"u8", torch::arange(9, torch::kByte)},
      {"bool", torch::tensor({true, false, true})},
      {"scalar", torch::tensor(3.5f)},
      {"empty", torch::zeros({0, 4})},
      {"strided", torch::randn({4, 6}).t()},
  };
  const std::string path = dir + "/t.safetensors";
  io::save_tensors(path, tensors, {{"format", "pt"}});
  io::SafetensorsFile file(path);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.tensors().size(), tensors.size());
  auto loaded = io::load_tensors(path);
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(loaded.count(name)) << name;
    EXPECT_EQ(loaded[name].scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(loaded[name].sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(loaded[name], t)) << name;
  }
  // Data starts 8-byte aligned, as HF's writer does.
  const std::string bytes = read_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_FALSE(fs::exists(path + ".tmp." + std::to_string(::getpid())));
  fs::remove_all(dir);
}

TEST(Safetensors, ShardedCheckpointThroughIndex) {
  const std::string dir = temp_dir("sharded");
  io::save_tensors(dir + "/model-00001-of-00002.safetensors", {{"a", torch::ones({2})}});
  io::save_tensors(dir + "/model-00002-of-00002.safetensors", {{"b", torch::full({3}, 2.0)}});
  write_file_atomic(dir + "/model.safetensors.index.json",
                    R"({"metadata": {"total_size": 20}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                         "b": "model-00002-of-00002.safetensors"}})");
  io::CheckpointReader reader(dir);
  EXPECT_EQ(reader.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(torch::equal(reader.load("b"), torch::full({3}, 2.0)));
  EXPECT_THROW(reader.load("c"), InputError);

  write_file_atomic(dir + "/model.safetensors.index.json", R"({"weight_map": {"a": "../evil.safetensors"}})");
  try {
    io::CheckpointReader bad(dir);
    FAIL() << "accepted a shard path outside the model directory";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not a plain file name"), std::string::npos) << e.what();
  }
  write_file_atomic(dir + "/model.safetensors.index.json",
                    R"({"weight_map": {"zz": "model-00001-of-00002.safetensors"}})");
  EXPECT_THROW(io::CheckpointReader missing(dir), InputError);
  fs::remove_all(dir);
}

TEST(Safetensors, MissingDirectoryAndFile) {
  EXPECT_THROW(io::CheckpointReader("/nonexistent/model"), InputError);
  EXPECT_THROW(io::SafetensorsFile("/nonexistent/x.safetensors"), InputError);
}

TEST(Safetensors, RejectsCorruptHeaders) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  // Sanity: the well-formed one is accepted.
  std::string good = raw_file(ok, 8);
  EXPECT_NO_THROW(io::SafetensorsFile::from_buffer(reinterpret_cast<const uint8_t*>(good.data()), good.size(), "x"));

  expect_rejected(std::string("\x01\x02", 2), "too small");
  expect_rejected(raw_file(ok, 8, 1ull << 40), "exceeds");
  expect_rejected(raw_file(ok, 8, ok.size() + 100), "runs past the end of the file");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32",)", 8), "not valid JSON");
  expect_rejected(raw_file(R"([1,2])", 0), "must be a JSON object");
  expect_rejected(raw_file(R"({"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", 8), "unsupported dtype 'C64'");
  expect_rejected(raw_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "missing field 'dtype'");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "non-negative");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "does not match shape");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), "past the end");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "before begin");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                              "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "overlap");
  expect_rejected(raw_file(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8),
                  "overflows");
  expect_rejected(raw_file(R"({"__metadata__":{"k":1}})", 0), "__metadata__");
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), "data_offsets");
}
