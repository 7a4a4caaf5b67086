// Tables generated from the Unicode Character Database (see scripts/gen_unicode_tables.py):
// sorted, non-overlapping code point ranges and the canonical (de)composition data NFC needs.
#pragma once
#include <cstddef>
#include <cstdint>

namespace safetune::text::unicode_data {

struct Range { uint32_t lo, hi; };
struct CccRange { uint32_t lo, hi; uint8_t ccc; };
struct Decomposition { uint32_t cp; uint32_t offset; uint32_t length; };  // into kDecompositionData
struct Composition { uint32_t first, second, composite; };                // sorted by (first, second)

extern const char* const kUnicodeVersion;
extern const Range kLetter[];      extern const size_t kLetterSize;     // \p{L}
extern const Range kNumber[];      extern const size_t kNumberSize;     // \p{N}
extern const Range kNfcUnsafe[];   extern const size_t kNfcUnsafeSize;
extern const CccRange kCombiningClass[];     extern const size_t kCombiningClassSize;
extern const Decomposition kDecomposition[]; extern const size_t kDecompositionSize;
extern const uint32_t kDecompositionData[];
extern const Composition kComposition[];     extern const size_t kCompositionSize;

}  // namespace safetune::text::unicode_data
