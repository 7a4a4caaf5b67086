// libFuzzer target: a tokenizer.json from a stranger.
//
// parse_tokenizer_json must either reject the text with InputError or build a tokenizer
// that encodes and decodes anything without crashing: a fixed string full of awkward
// cases, a slice of the input itself (often not valid UTF-8), and ids taken from the
// input (many out of range). Encoded ids must be inside the vocabulary.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "safetune/core/error.h"
#include "safetune/text/bpe_tokenizer.h"

namespace {

// Spaces and newlines runs, contractions, digits, CJK, emoji with ZWJ, combining marks,
// a byte that is not UTF-8, and text that looks like special tokens.
const char kTricky[] =
    "Hello  world!\n\n\tI'm   you'll 12345 3.14\r\n\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB "
    "e\xCC\x81 \xC3\xA9 \xFF\xFE <|im_start|>user<|endoftext|><s></s>\xE2\x96\x81 <0x0A>   ";

[[noreturn]] void broken(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::abort();
}

void round_trip(const safetune::text::Tokenizer& tok, std::string_view text) {
  for (bool bos : {false, true}) {
    const std::vector<int32_t> ids = tok.encode(text, bos);
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) broken("encode produced id " + std::to_string(id) + " outside the vocab");
    (void)tok.decode(ids, false);
    (void)tok.decode(ids, true);
    for (int32_t id : ids) (void)tok.id_to_piece(id), (void)tok.is_special(id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<safetune::text::Tokenizer> tok;
  try {
    tok = safetune::text::parse_tokenizer_json(text, "tokenizer.json");
  } catch (const safetune::InputError&) {
    return 0;  // a clean rejection
  }
  round_trip(*tok, std::string_view(kTricky, sizeof kTricky - 1));
  round_trip(*tok, std::string_view(text).substr(size / 2, 256));

  // Arbitrary ids, including negative and huge ones: decode skips what is not a token.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 4 <= size && ids.size() < 64; i += 4) {
    int32_t id;
    std::memcpy(&id, data + i, 4);
    ids.push_back(i % 8 == 0 ? id : id % (tok->vocab_size() + 8));
  }
  (void)tok->decode(ids, false);
  (void)tok->decode(ids, true);
  for (int32_t id : ids) (void)tok->id_to_piece(id), (void)tok->is_special(id);
  for (auto id : {tok->bos_id, tok->eos_id, tok->pad_id})
    if (id && (*id < 0 || *id >= tok->vocab_size())) broken("special id outside the vocab");
  return 0;
}
