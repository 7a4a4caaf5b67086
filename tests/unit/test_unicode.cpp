// Unicode helpers against Python's unicodedata (an independent implementation of the
// same database): NFC of strings built to exercise decomposition, reordering, blocking
// and Hangul; \p{L} / \p{N} classes on a sample of code points; UTF-8 validation.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "safetune/text/unicode.h"
#include "test_util.h"

using namespace safetune::text;
using json = nlohmann::json;

TEST(Unicode, NfcMatchesPythonUnicodedata) {
  std::vector<std::string> cases = {
      "caf\u0065\u0301",                // e + acute -> é
      "\u0041\u030A\u0301",             // A ring acute: composes the first, keeps the second
      "\u0071\u0307\u0323",             // q dot-above dot-below: reordered, no composite
      "\u1E0B\u0323",                   // ḋ + dot below -> ḍ + dot above
      "\u0061\u0328\u0301\u0323",       // several marks in non-canonical order
      "\u1100\u1161\u11A8 \u1100\u1161",  // Hangul jamo -> syllables
      "\uAC00\u11A8",                   // LV syllable + T
      "\u0915\u093C",                   // composition exclusion: stays decomposed
      "\u2126 \u212B \u00C5",           // singletons: Ohm -> Omega, Angstrom -> Å
      "\u0301leading mark",             // a non-starter first
      "plain ascii",
      "中文 ünïcödé Ёлка 😀",
      "\u1E9B\u0323",                   // long s with dot above + dot below
      "\u0CC6\u0CC2\u0CD5",             // Kannada two-starter composition
  };
  std::string dir = (std::filesystem::temp_directory_path() / ("safetune_uc_" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/in.json") << json(cases).dump();
  std::ofstream(dir + "/ref.py")
      << "import json, sys, unicodedata\n"
         "cases = json.load(open(sys.argv[1], encoding='utf-8'))\n"
         "sample = list(range(0, 0x3400, 7)) + list(range(0x10000, 0x20000, 97))\n"
         "sample = [c for c in sample if not 0xD800 <= c <= 0xDFFF]\n"
         "print(json.dumps({'nfc': [unicodedata.normalize('NFC', c) for c in cases],\n"
         "  'sample': sample,\n"
         "  'L': [unicodedata.category(chr(c)).startswith('L') for c in sample],\n"
         "  'N': [unicodedata.category(chr(c)).startswith('N') for c in sample]}))\n";
  std::string out = safetune::test_util::run_command(safetune::test_util::kPython + " " + dir + "/ref.py " + dir + "/in.json");
  std::filesystem::remove_all(dir);
  if (out.empty()) GTEST_FAIL() << "the python reference gave no output: " << safetune::test_util::python_missing("unicodedata");
  json ref = json::parse(out);
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(unicode::nfc(cases[i]), ref["nfc"][i].get<std::string>()) << i;
  auto sample = ref["sample"].get<std::vector<uint32_t>>();
  for (size_t i = 0; i < sample.size(); ++i) {
    ASSERT_EQ(unicode::is_letter(sample[i]), ref["L"][i].get<bool>()) << std::hex << sample[i];
    ASSERT_EQ(unicode::is_number(sample[i]), ref["N"][i].get<bool>()) << std::hex << sample[i];
  }
}

TEST(Unicode, Utf8Validation) {
  EXPECT_EQ(unicode::find_invalid_utf8("ok ünï 😀"), std::string::npos);
  EXPECT_EQ(unicode::find_invalid_utf8(std::string("ab\xC3", 3)), 2u);         // truncated
  EXPECT_EQ(unicode::find_invalid_utf8("a\xC0\xAF"), 1u);                       // overlong '/'
  EXPECT_EQ(unicode::find_invalid_utf8("x\xED\xA0\x80"), 1u);                   // surrogate
  EXPECT_EQ(unicode::find_invalid_utf8("\xF4\x90\x80\x80"), 0u);                // > U+10FFFF
  EXPECT_EQ(unicode::to_valid_utf8("a\xFF" "b"), "a\uFFFD" "b");
  EXPECT_TRUE(unicode::is_space(0x3000));
  EXPECT_FALSE(unicode::is_space(0x200B));  // zero width space is not White_Space
}
