// Run directories: what a killed process leaves is cleaned before a resume, `latest` can
// only name a checkpoint inside the run directory, a config cannot send the run directory
// up with '..', and error messages stay on one line whatever the input held.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/train/checkpoint.h"
#include "safetune/train/config.h"
#include "test_util.h"

namespace safetune {
namespace {
namespace fs = std::filesystem;

void touch(const fs::path& p, const std::string& text = "x") {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

TEST(RunDirSafety, StaleTemporariesAreRemovedAndTheRestKept) {
  const fs::path run = test_util::fresh_temp_dir("safetune_stale");
  const fs::path ck = run / "checkpoints";
  touch(ck / "step-00000002" / "trainer_state.json");
  write_file_atomic((run / "latest").string(), "checkpoints/step-00000002\n");
  // Left by killed processes: a checkpoint being written, an old copy being replaced,
  // atomic-write temporaries, final exports in progress.
  touch(ck / ".tmp-step-00000003" / "optimizer.safetensors");
  touch(ck / ".tmp-step-00000007" / "trainer_state.json");
  touch(ck / "step-00000001.old" / "trainer_state.json");
  touch(run / "latest.tmp.4242");
  touch(run / "metrics.jsonl.tmp.17");
  touch(run / "config.resolved.yaml.tmp.9");
  touch(run / "adapter.tmp" / "adapter_model.safetensors");
  touch(run / "model.tmp.31337" / "model.safetensors");
  touch(run / "model.old.5" / "model.safetensors");
  // Not temporaries: must stay.
  touch(run / "adapter" / "adapter_model.safetensors");
  touch(run / "notes.txt");
  touch(run / "model.tmp.backup");
  touch(run / "metrics.jsonl");

  train::clean_stale_temporaries(run.string());

  for (const char* gone : {"checkpoints/.tmp-step-00000003", "checkpoints/.tmp-step-00000007",
                           "checkpoints/step-00000001.old", "latest.tmp.4242", "metrics.jsonl.tmp.17",
                           "config.resolved.yaml.tmp.9", "adapter.tmp", "model.tmp.31337", "model.old.5"})
    EXPECT_FALSE(fs::exists(run / gone)) << gone;
  for (const char* kept : {"checkpoints/step-00000002/trainer_state.json", "latest", "adapter/adapter_model.safetensors",
                           "notes.txt", "model.tmp.backup", "metrics.jsonl"})
    EXPECT_TRUE(fs::exists(run / kept)) << kept;
  EXPECT_EQ(train::latest_checkpoint(run.string()), (run / "checkpoints/step-00000002").string());
  fs::remove_all(run);
}

TEST(RunDirSafety, ACheckpointRenamedAsideIsPutBack) {
  // A kill between the two renames that replace a checkpoint of the same step.
  const fs::path run = test_util::fresh_temp_dir("safetune_aside");
  touch(run / "checkpoints" / "step-00000004.old" / "trainer_state.json", "{}");
  write_file_atomic((run / "latest").string(), "checkpoints/step-00000004\n");
  EXPECT_THROW(train::latest_checkpoint(run.string()), InputError);
  train::clean_stale_temporaries(run.string());
  EXPECT_TRUE(fs::exists(run / "checkpoints/step-00000004/trainer_state.json"));
  EXPECT_FALSE(fs::exists(run / "checkpoints/step-00000004.old"));
  EXPECT_EQ(train::latest_checkpoint(run.string()), (run / "checkpoints/step-00000004").string());
  fs::remove_all(run);
}

TEST(RunDirSafety, LatestCannotPointOutsideTheRunDirectory) {
  const fs::path run = test_util::fresh_temp_dir("safetune_latest");
  touch(run / "elsewhere" / "trainer_state.json", "{}");
  touch(run / "checkpoints" / "step-00000001" / "trainer_state.json", "{}");
  for (const char* bad : {"../elsewhere\n", "checkpoints/../../elsewhere\n", "/etc\n", "checkpoints/step-0000001x\n",
                          "checkpoints/step-00000001/../../elsewhere\n", "\n"}) {
    write_file_atomic((run / "latest").string(), bad);
    const std::string m = test_util::input_error_of([&] { train::latest_checkpoint(run.string()); });
    EXPECT_NE(m.find("expected checkpoints/step-NNNNNNNN"), std::string::npos) << bad << ": " << m;
    EXPECT_THROW(train::clean_stale_temporaries(run.string()), InputError) << bad;
  }
  write_file_atomic((run / "latest").string(), "checkpoints/step-00000001\n");
  EXPECT_EQ(train::latest_checkpoint(run.string()), (run / "checkpoints/step-00000001").string());
  fs::remove_all(run);
}

TEST(RunDirSafety, OutputDirMayNotClimbWithDotDot) {
  const std::string head = "model:\n  path: m\ndata:\n  train: t.jsonl\n";
  const std::string yaml = head + "train:\n  output_dir: runs/a\n";
  for (const char* bad : {"train.output_dir=../x", "train.output_dir=runs/../../x", "train.output_dir=a/..",
                          "train.output_dir=/tmp/../etc/x"}) {
    const std::string m = test_util::input_error_of([&] { train::parse_run_config(yaml, "c.yaml", {bad}); });
    EXPECT_NE(m.find("contains '..'"), std::string::npos) << bad << ": " << m;
  }
  EXPECT_EQ(test_util::input_error_of([&] { train::parse_run_config(yaml + "  max_steps: 1\n", "c.yaml", {}); }), "");
  for (const char* ok : {"train.output_dir=runs/a..b", "train.output_dir=/tmp/runs/x", "train.output_dir=./x",
                         "train.output_dir=..x"})
    EXPECT_EQ(train::parse_run_config(yaml, "c.yaml", {ok}).train.output_dir, std::string(ok).substr(17)) << ok;
  // In the YAML itself, the message names the file and line.
  const std::string in_file = test_util::input_error_of(
      [&] { train::parse_run_config("train:\n  output_dir: ../../up\n" + head, "c.yaml", {}); });
  EXPECT_NE(in_file.find("c.yaml:2: train.output_dir = '../../up' contains '..'"), std::string::npos) << in_file;
}

TEST(RunDirSafety, ErrorMessagesStayOnOneLine) {
  const std::string m = test_util::input_error_of([] { input_error("f.yaml:3", "unknown key 'a\nb\x1b[31m\t\r'"); });
  EXPECT_EQ(m, "f.yaml:3: unknown key 'a\\nb\\x1b[31m\\t\\r'");
  EXPECT_EQ(test_util::input_error_of([] { input_error("x", "caf\xc3\xa9 ok"); }), "x: caf\xc3\xa9 ok");  // UTF-8 is kept
}

}  // namespace
}  // namespace safetune
