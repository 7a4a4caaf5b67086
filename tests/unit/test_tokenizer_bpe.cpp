// tokenizer.json on tiny handmade tokenizers whose ids can be worked out by hand: merge
// ranking (lowest rank first, leftmost on ties), both merge formats, added tokens
// (longest match, before BPE), the GPT-2 and Llama-3 split rules, SentencePiece-style
// BPE with byte fallback (Prepend/Replace normalizers or Metaspace), decoding, and the
// errors for what is not supported. Real published tokenizers are compared with an
// independent implementation in tests/e2e/tokenizer_json.sh.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "safetune/core/error.h"
#include "safetune/text/bpe_tokenizer.h"
#include "safetune/text/tokenizer.h"
#include "test_util.h"

using namespace safetune;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;

namespace {

// GPT-2's published byte-to-unicode table, written out independently of the library:
// printable Latin-1 bytes stand for themselves, the rest map to U+0100.. in byte order.
std::string byte_char(int b) {
  static std::vector<uint32_t> table = [] {
    std::vector<uint32_t> t(256);
    uint32_t n = 0;
    for (int i = 0; i < 256; ++i) {
      bool printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
      t[i] = printable ? uint32_t(i) : 256 + n++;
    }
    return t;
  }();
  uint32_t cp = table[b];
  std::string s;
  if (cp < 0x80) s.push_back(char(cp));
  else { s.push_back(char(0xC0 | (cp >> 6))); s.push_back(char(0x80 | (cp & 0x3F))); }
  return s;
}

// A byte-level vocab: ids 0..255 are the single bytes, then the given merged pieces.
json byte_level_model(const std::vector<std::pair<std::string, std::string>>& merges, bool array_merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  json m = json::array();
  int next = 256;
  for (auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
    if (array_merges) m.push_back(json::array({a, b}));
    else m.push_back(a + " " + b);
  }
  return json{{"type", "BPE"}, {"vocab", vocab}, {"merges", m}, {"unk_token", nullptr}};
}

const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"h", "e"}, {"l", "l"}, {"ll", "o"}, {"he", "llo"}, {"b", "c"}, {"a", "b"}};
// ids: he 256, ll 257, llo 258, hello 259, bc 260, ab 261

json gpt2_style(bool array_merges = false) {
  return json{
      {"version", "1.0"},
      {"added_tokens", json::array({
           json{{"id", 300}, {"content", "<|im_start|>"}, {"special", true}},
           json{{"id", 301}, {"content", "<|im|>"}, {"special", true}},
           json{{"id", 302}, {"content", "<|end|>"}, {"special", true}},
       })},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", byte_level_model(kMerges, array_merges)}};
}

std::unique_ptr<text::Tokenizer> parse(const json& j) { return text::parse_tokenizer_json(j.dump(), "test.json"); }

std::string temp_dir() {
  auto dir = std::filesystem::temp_directory_path() / ("safetune_tok_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace

TEST(TokenizerBpe, MergesByRankLeftmostFirst) {
  auto tok = parse(gpt2_style());
  EXPECT_EQ(tok->kind(), "bpe");
  EXPECT_EQ(tok->encode("hello"), (Ids{259}));
  // "lll": both (l,l) pairs have the same rank; the leftmost merges first.
  EXPECT_EQ(tok->encode("lll"), (Ids{257, 'l'}));
  // "abc": (b,c) has a lower rank than (a,b), so it wins although it is further right.
  EXPECT_EQ(tok->encode("abc"), (Ids{'a', 260}));
  // " hello" is one pre-token (GPT-2's " ?\p{L}+"); the space byte is 'Ġ' = byte 0x20.
  EXPECT_EQ(tok->encode(" hello"), (Ids{' ', 259}));
  EXPECT_EQ(tok->id_to_piece(' '), "\xC4\xA0");  // "Ġ"
}

TEST(TokenizerBpe, BothMergeFormatsAgree) {
  auto a = parse(gpt2_style(false)), b = parse(gpt2_style(true));
  for (const char* s : {"hello abc", "lll hell", "abcabc"}) EXPECT_EQ(a->encode(s), b->encode(s)) << s;
}

TEST(TokenizerBpe, AddedTokensLongestMatchBeforeBpe) {
  auto tok = parse(gpt2_style());
  EXPECT_EQ(tok->encode("<|im_start|>hello<|end|>"), (Ids{300, 259, 302}));
  EXPECT_EQ(tok->encode("<|im|>x"), (Ids{301, 'x'}));
  // Not a complete added token: plain bytes, split by the GPT-2 rule into "<|", "im", "_|".
  EXPECT_EQ(tok->encode("<|im_"), (Ids{'<', '|', 'i', 'm', '_'}));
  EXPECT_TRUE(tok->is_special(300));
  EXPECT_FALSE(tok->is_special(259));
  EXPECT_EQ(tok->piece_to_id("<|end|>"), 302);
  EXPECT_EQ(tok->decode({300, 259, 302}), "<|im_start|>hello<|end|>");
  EXPECT_EQ(tok->decode({300, 259, 302}, /*skip_special=*/true), "hello");
}

TEST(TokenizerBpe, Gpt2SplitRule) {
  auto tok = parse(gpt2_style());
  // "it's" -> "it" "'s"; spaces: "a  b" -> "a" " " " b" (\s+(?!\S) leaves one space).
  EXPECT_EQ(tok->encode("it's"), (Ids{'i', 't', '\'', 's'}));
  EXPECT_EQ(tok->encode("a  b"), (Ids{'a', ' ', ' ', 'b'}));
  auto d = tok->decode(tok->encode("a  b"));
  EXPECT_EQ(d, "a  b");
}

TEST(TokenizerBpe, Llama3SplitRuleGroupsDigitsByThree) {
  json j = gpt2_style();
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", json::array({
           {{"type", "Split"},
            {"pattern", {{"Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
            {"behavior", "Isolated"},
            {"invert", false}},
           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}},
       })}};
  // Merges for "12" and "123" show where the digit run is cut: "12345" -> "123" "45".
  j["model"] = byte_level_model({{"1", "2"}, {"12", "3"}, {"4", "5"}}, false);
  auto tok = parse(j);
  Ids ids = tok->encode("12345");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(tok->id_to_piece(ids[0]), "123");
  EXPECT_EQ(tok->id_to_piece(ids[1]), "45");
  // Case-insensitive contractions, and a space before letters joins them.
  EXPECT_EQ(tok->encode("'S"), (Ids{'\'', 'S'}));
  for (const char* s : {"I'M here", "x\n\n  y", "tabs\t\tend  ", "😀 ok", "Ünïcödé"})
    EXPECT_EQ(tok->decode(tok->encode(s)), s) << s;
}

TEST(TokenizerBpe, RoundTripBytes) {
  auto tok = parse(gpt2_style());
  for (const char* s : {"", "hello world", "emoji 😀👍🏽 CJK 你好 Ёлка café", "  \n\t x  ", "<|end|><|end|>"})
    EXPECT_EQ(tok->decode(tok->encode(s)), s) << s;
}

// SentencePiece-style: <unk> <s> </s>, 256 byte pieces, then ▁ a b ▁a ab ▁ab.
json spm_style(bool metaspace) {
  json vocab = json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    vocab[hex] = 3 + b;
  }
  const std::string U = "\xE2\x96\x81";  // ▁
  int id = 259;
  for (std::string p : {U, std::string("a"), std::string("b"), U + "a", std::string("ab"), U + "ab"}) vocab[p] = id++;
  // ids: ▁ 259, a 260, b 261, ▁a 262, ab 263, ▁ab 264
  json j = {
      {"added_tokens", json::array({json{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                    json{{"id", 1}, {"content", "<s>"}, {"special", true}},
                                    json{{"id", 2}, {"content", "</s>"}, {"special", true}}})},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b", U + " ab", U + " a"})},
        {"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true}}}};
  if (metaspace) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", U}, {"prepend_scheme", "first"}, {"split", false}};
    j["decoder"] = {{"type", "Sequence"},
                    {"decoders", json::array({{{"type", "Metaspace"}, {"replacement", U}, {"prepend_scheme", "first"}},
                                              {{"type", "ByteFallback"}},
                                              {{"type", "Fuse"}}})}};
  } else {
    j["normalizer"] = {{"type", "Sequence"},
                       {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", U}},
                                                    {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", U}}})}};
    j["pre_tokenizer"] = nullptr;
    j["decoder"] = {{"type", "Sequence"},
                    {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", U}}}, {"content", " "}},
                                              {{"type", "ByteFallback"}},
                                              {{"type", "Fuse"}},
                                              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  }
  return j;
}

// Split on a fixed string (Gemma 3's pre-tokenizer: " ", MergedWithPrevious): the
// delimiter ends the piece before it (MergedWithPrevious) or stands alone (Isolated), and
// no merge crosses a piece boundary. Merges: "-"+"b" (rank 0), "a"+"-" (rank 1).
TEST(TokenizerBpe, SplitOnLiteralString) {
  auto with_split = [](const char* behavior) {
    json j = gpt2_style();
    json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
    if (behavior)
      j["pre_tokenizer"] = {{"type", "Sequence"},
                            {"pretokenizers", json::array({{{"type", "Split"},
                                                            {"pattern", {{"String", "-"}}},
                                                            {"behavior", behavior},
                                                            {"invert", false}},
                                                           byte_level})}};
    else
      j["pre_tokenizer"] = byte_level;
    j["model"] = byte_level_model({{"-", "b"}, {"a", "-"}}, true);  // "-b" 256, "a-" 257
    return parse(j);
  };
  EXPECT_EQ(with_split(nullptr)->encode("a-b"), (Ids{'a', 256}));  // one word: rank 0 first
  EXPECT_EQ(with_split("MergedWithPrevious")->encode("a-b"), (Ids{257, 'b'}));
  EXPECT_EQ(with_split("MergedWithPrevious")->encode("-b-"), (Ids{'-', 'b', '-'}));
  EXPECT_EQ(with_split("Isolated")->encode("a-b"), (Ids{'a', '-', 'b'}));
}

TEST(TokenizerBpe, SentencePieceStyleByteFallback) {
  for (bool metaspace : {false, true}) {
    SCOPED_TRACE(metaspace ? "Metaspace" : "Prepend+Replace");
    auto tok = parse(spm_style(metaspace));
    EXPECT_EQ(tok->kind(), "spm_json");
    // "▁ab▁ab▁a": a+b (rank 0) twice, then ▁+ab (rank 1) twice, then ▁+a (rank 2).
    EXPECT_EQ(tok->encode("ab ab a"), (Ids{264, 264, 262}));
    // é is not in the vocab: its UTF-8 bytes C3 A9 as <0xC3> <0xA9>.
    EXPECT_EQ(tok->encode("ab é"), (Ids{264, 259, 3 + 0xC3, 3 + 0xA9}));
    EXPECT_EQ(tok->decode({264, 259, 3 + 0xC3, 3 + 0xA9}), "ab é");
    EXPECT_EQ(tok->encode("<s>ab"), metaspace ? (Ids{1, 263}) : (Ids{1, 264}));
    for (const char* s : {"ab ab a", "b a  ab", "Ünï 😀 中"}) EXPECT_EQ(tok->decode(tok->encode(s)), s) << s;
    EXPECT_EQ(tok->decode({1, 264, 2}, true), "ab");
  }
}

TEST(TokenizerBpe, ErrorsNameTheComponentAndFile) {
  std::string dir = temp_dir();
  auto write = [&](const std::string& name, const std::string& text) {
    std::string p = dir + "/" + name;
    std::ofstream(p) << text;
    return p;
  };
  std::string p = write("malformed.json", "{\"model\": {");
  std::string e = test_util::input_error_of([&] { text::load_tokenizer_json(p); });
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_NE(e.find("malformed JSON"), std::string::npos) << e;

  json j = gpt2_style();
  j["model"]["type"] = "WordPiece";
  p = write("wordpiece.json", j.dump());
  e = test_util::input_error_of([&] { text::load_tokenizer_json(p); });
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_NE(e.find("WordPiece"), std::string::npos) << e;

  j = gpt2_style();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  p = write("whitespace.json", j.dump());
  e = test_util::input_error_of([&] { text::load_tokenizer_json(p); });
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_NE(e.find("Whitespace"), std::string::npos) << e;

  j = gpt2_style();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}};
  e = test_util::input_error_of([&] { parse(j); });
  EXPECT_NE(e.find("\\\\w+"), std::string::npos) << e;

  j = gpt2_style();
  j["normalizer"] = {{"type", "Lowercase"}};
  EXPECT_NE(test_util::input_error_of([&] { parse(j); }).find("Lowercase"), std::string::npos);

  j = gpt2_style();
  j["model"]["merges"].push_back("zz qq");
  EXPECT_NE(test_util::input_error_of([&] { parse(j); }).find("not in the vocab"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(TokenizerBpe, LoadTokenizerReadsSpecialTokens) {
  std::string dir = temp_dir() + "/model";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.json") << gpt2_style().dump();
  // bos as a string, eos as {content}, pad from config.json's id.
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"bos_token": "<|im_start|>", "eos_token": {"content": "<|end|>", "lstrip": false}})";
  std::ofstream(dir + "/config.json") << R"({"pad_token_id": 301, "eos_token_id": [7, 8]})";
  auto tok = text::load_tokenizer(dir);
  EXPECT_EQ(tok->bos_id, 300);
  EXPECT_EQ(tok->eos_id, 302);
  EXPECT_EQ(tok->pad_id, 301);
  EXPECT_EQ(tok->encode("hello", /*add_bos=*/true), (Ids{300, 259}));

  // Explicit null means none (and stops the search); otherwise config.json fills in.
  std::ofstream(dir + "/tokenizer_config.json") << R"({"bos_token": null})";
  tok = text::load_tokenizer(dir);
  EXPECT_FALSE(tok->bos_id.has_value());
  EXPECT_EQ(tok->eos_id, 7);

  std::filesystem::remove(dir + "/tokenizer.json");
  EXPECT_NE(test_util::input_error_of([&] { text::load_tokenizer(dir); }).find("no tokenizer.json or tokenizer.model"), std::string::npos);
  std::filesystem::remove_all(temp_dir());
}

TEST(TokenizerBpe, AddedTokenLstripRstripSwallowWhitespace) {
  json j = gpt2_style();
  j["added_tokens"].push_back(json{{"id", 303}, {"content", "<mask>"}, {"lstrip", true}, {"special", true}});
  j["added_tokens"].push_back(json{{"id", 304}, {"content", "<r>"}, {"rstrip", true}, {"special", false}});
  auto tok = parse(j);
  // "a  <mask>": the two spaces before <mask> belong to it; "<r>  b": those after <r>.
  EXPECT_EQ(tok->encode("a  <mask>"), (Ids{'a', 303}));
  EXPECT_EQ(tok->encode("<r>  b"), (Ids{304, 'b'}));
  EXPECT_EQ(tok->encode("a <r> b"), (Ids{'a', ' ', 304, 'b'}));
  EXPECT_FALSE(tok->is_special(304));
}
