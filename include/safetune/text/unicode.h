// The small slice of Unicode the tokenizers need: UTF-8 decoding and validation, the
// general-category classes used by pre-tokenizer regexes (\p{L}, \p{N}, \s), and NFC.
// Tables are generated from the Unicode Character Database by scripts/gen_unicode_tables.py.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace safetune::text::unicode {

constexpr uint32_t kInvalid = 0xFFFFFFFF;

// Decodes the code point at s[pos] and advances pos. Invalid or truncated sequences,
// overlong forms and surrogates yield kInvalid and advance by one byte.
uint32_t decode_utf8(std::string_view s, size_t& pos);
void append_utf8(std::string& out, uint32_t cp);

// Byte offset of the first invalid sequence, or npos when `s` is valid UTF-8.
size_t find_invalid_utf8(std::string_view s);
// Replaces each invalid byte with U+FFFD (what decoders do with broken byte sequences).
std::string to_valid_utf8(std::string_view s);

// Character classes as regex engines define them.
enum : uint8_t { kLetter = 1, kNumber = 2, kSpace = 4, kNfcUnsafe = 8 };
uint8_t classes(uint32_t cp);
inline bool is_letter(uint32_t cp) { return classes(cp) & kLetter; }   // \p{L}
inline bool is_number(uint32_t cp) { return classes(cp) & kNumber; }   // \p{N}
inline bool is_space(uint32_t cp) { return classes(cp) & kSpace; }     // \s (White_Space)

uint8_t combining_class(uint32_t cp);

// Canonical composition (NFC) of valid UTF-8; invalid bytes pass through unchanged.
std::string nfc(std::string_view s);
// True when nfc(s) == s is certain without running the full algorithm (the fast path).
bool is_nfc_quick(std::string_view s);

}  // namespace safetune::text::unicode
