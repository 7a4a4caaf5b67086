// SentencePiece through the dlopen'ed shim: train a small BPE model (byte fallback) on a
// multilingual text, then check that our ids and decoding are identical to Debian's
// python3-sentencepiece on the same model and text, and that load_tokenizer picks
// tokenizer.model up from a model directory.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "safetune/core/error.h"
#include "safetune/text/sentencepiece.h"
#include "safetune/text/tokenizer.h"
#include "test_util.h"

using namespace safetune;
using json = nlohmann::json;

namespace {

const std::vector<std::string> kLines = {
    "The quick brown fox jumps over the lazy dog.",
    "Fine-tuning keeps the model's safety alignment intact, mostly.",
    "Café, naïve, résumé, jalapeño, Straße, Ærøskøbing, façade.",
    "Ünïcödé àccénts are everywhere: Zürich, São Paulo, Kraków.",
    "我们今天去公园散步，天气很好。",
    "日本語のテキストも少し入れておきます。",
    "한국어 문장도 하나 있습니다.",
    "Привет, мир! Как дела? Всё хорошо.",
    "Съешь же ещё этих мягких французских булок.",
    "Emoji: 😀 🎉 👍🏽 🚀 and a family 👨‍👩‍👧.",
    "Numbers 1234567890, 3.14159 and 2,718,281.",
    "  leading spaces, trailing spaces   ",
    "Tabs\tinside\tthe line.",
    "Ελληνικά γράμματα: αβγδε.",
    "مرحبا بالعالم",
};

std::string temp_dir() {
  auto dir = std::filesystem::temp_directory_path() / ("safetune_spm_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}


// Shim lookup: tests run from build/tests/, the shim sits in build/.
void point_at_shim() {
  if (!std::getenv("SAFETUNE_SPM_SHIM")) setenv("SAFETUNE_SPM_SHIM", SAFETUNE_BINARY_DIR, 0);
}

}  // namespace

TEST(TokenizerSpm, TrainedModelMatchesPythonSentencepiece) {
  if (!test_util::python_has("sentencepiece")) GTEST_FAIL() << test_util::python_missing("sentencepiece");
  point_at_shim();
  std::string dir = temp_dir();
  std::string corpus = dir + "/corpus.txt";
  {
    std::ofstream f(corpus);
    for (int rep = 0; rep < 20; ++rep)
      for (const std::string& l : kLines) f << l << "\n";
  }
  text::train_sentencepiece(corpus, dir + "/spm", 800, "bpe", true, "--hard_vocab_limit=false");
  ASSERT_TRUE(std::filesystem::exists(dir + "/spm.model"));
  auto tok = text::load_sentencepiece(dir + "/spm.model");
  EXPECT_EQ(tok->kind(), "sentencepiece");

  // Texts to compare: the training lines, unseen words, characters it never saw (byte
  // fallback), and whitespace oddities.
  std::vector<std::string> texts = kLines;
  for (const char* t : {"Completely unseen vocabulary: xylophone quizzical.", "🦀 ferris 🐍 python ∑∫∂",
                        "multiple   spaces\nand a newline", "", "Ѣ ѣ ꙮ archaic letters", "ünïcödé" })
    texts.push_back(t);
  std::string texts_path = dir + "/texts.json";
  std::ofstream(texts_path) << json(texts).dump();

  std::string script = dir + "/ref.py";
  std::ofstream(script) << "import json, sys\n"
                           "import sentencepiece as spm\n"
                           "sp = spm.SentencePieceProcessor(model_file=sys.argv[1])\n"
                           "texts = json.load(open(sys.argv[2], encoding='utf-8'))\n"
                           "ids = [sp.encode(t) for t in texts]\n"
                           "print(json.dumps({'ids': ids, 'decoded': [sp.decode(i) for i in ids],\n"
                           "  'vocab': sp.get_piece_size(), 'bos': sp.bos_id(), 'eos': sp.eos_id(),\n"
                           "  'pieces': [sp.id_to_piece(i) for i in range(sp.get_piece_size())]}))\n";
  std::string out = test_util::run_command(test_util::kPython + " " + script + " " + dir + "/spm.model " + texts_path);
  ASSERT_FALSE(out.empty()) << "python reference failed";
  json ref = json::parse(out);

  EXPECT_EQ(tok->vocab_size(), ref["vocab"].get<int64_t>());
  EXPECT_EQ(tok->bos_id.value_or(-1), ref["bos"].get<int>());
  EXPECT_EQ(tok->eos_id.value_or(-1), ref["eos"].get<int>());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = tok->encode(texts[i]);
    EXPECT_EQ(ids, ref["ids"][i].get<std::vector<int32_t>>()) << texts[i];
    EXPECT_EQ(tok->decode(ids), ref["decoded"][i].get<std::string>()) << texts[i];
  }
  for (int64_t id = 0; id < tok->vocab_size(); ++id) {
    std::string piece = ref["pieces"][id].get<std::string>();
    ASSERT_EQ(tok->id_to_piece(int32_t(id)), piece);
    ASSERT_EQ(tok->piece_to_id(piece), int32_t(id));
  }
  EXPECT_FALSE(tok->piece_to_id("no such piece at all").has_value());
  // Byte fallback was trained in: a character never seen is still encoded losslessly.
  EXPECT_EQ(tok->decode(tok->encode("🦀 ꙮ")), "🦀 ꙮ");

  // As a model directory: tokenizer.model, special tokens from tokenizer_config.json.
  std::string model_dir = dir + "/model";
  std::filesystem::create_directories(model_dir);
  std::filesystem::copy_file(dir + "/spm.model", model_dir + "/tokenizer.model");
  std::ofstream(model_dir + "/tokenizer_config.json") << R"({"bos_token": {"content": "<s>"}, "eos_token": "</s>", "pad_token": null})";
  auto loaded = text::load_tokenizer(model_dir);
  EXPECT_EQ(loaded->kind(), "sentencepiece");
  EXPECT_EQ(loaded->bos_id, tok->piece_to_id("<s>"));
  EXPECT_EQ(loaded->eos_id, tok->piece_to_id("</s>"));
  EXPECT_FALSE(loaded->pad_id.has_value());
  auto with_bos = loaded->encode(kLines[0], true);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos[0], *loaded->bos_id);
  EXPECT_TRUE(loaded->is_special(*loaded->bos_id));
  std::filesystem::remove_all(dir);
}

TEST(TokenizerSpm, NotAModelIsAnInputErrorNamingTheFile) {
  point_at_shim();
  std::string dir = temp_dir();
  std::string bad = dir + "/tokenizer.model";
  std::ofstream(bad) << "this is not a protobuf";
  try {
    text::load_sentencepiece(bad);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}
