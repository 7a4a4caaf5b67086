// UTF-8, character classes and NFC over the generated tables in unicode_tables.cpp.
//
// Classes are looked up through a 64 KiB table for the Basic Multilingual Plane (built
// once from the ranges) and a binary search above it: the pre-tokenizers ask for every
// code point of the input, so this lookup is on the hot path.
#include "safetune/text/unicode.h"

#include <algorithm>
#include <array>
#include <memory>
#include <vector>

#include "unicode_tables.h"

namespace safetune::text::unicode {
namespace ud = unicode_data;

uint32_t decode_utf8(std::string_view s, size_t& pos) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = pos;
  unsigned char c = p[i];
  if (c < 0x80) { pos = i + 1; return c; }
  int len; uint32_t cp, min;
  if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
  else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
  else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
  else { pos = i + 1; return kInvalid; }
  if (i + len > n) { pos = i + 1; return kInvalid; }
  for (int k = 1; k < len; ++k) {
    unsigned char cc = p[i + k];
    if ((cc & 0xC0) != 0x80) { pos = i + 1; return kInvalid; }
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { pos = i + 1; return kInvalid; }
  pos = i + len;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

size_t find_invalid_utf8(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<unsigned char>(s[pos]) < 0x80) { ++pos; continue; }
    size_t at = pos;
    if (decode_utf8(s, pos) == kInvalid) return at;
  }
  return std::string_view::npos;
}

std::string to_valid_utf8(std::string_view s) {
  if (find_invalid_utf8(s) == std::string_view::npos) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  size_t pos = 0;
  while (pos < s.size()) {
    size_t at = pos;
    uint32_t cp = decode_utf8(s, pos);
    if (cp == kInvalid) append_utf8(out, 0xFFFD);
    else out.append(s.substr(at, pos - at));
  }
  return out;
}

namespace {

bool in_ranges(const ud::Range* r, size_t n, uint32_t cp) {
  const ud::Range* end = r + n;
  const ud::Range* it = std::upper_bound(r, end, cp, [](uint32_t v, const ud::Range& x) { return v < x.lo; });
  return it != r && cp <= (it - 1)->hi;
}

// White_Space, as Oniguruma's \s (what HF tokenizers use) defines it in Unicode mode.
bool white_space(uint32_t cp) {
  return (cp >= 0x9 && cp <= 0xD) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

uint8_t compute_classes(uint32_t cp) {
  uint8_t c = 0;
  if (in_ranges(ud::kLetter, ud::kLetterSize, cp)) c |= kLetter;
  if (in_ranges(ud::kNumber, ud::kNumberSize, cp)) c |= kNumber;
  if (white_space(cp)) c |= kSpace;
  if (in_ranges(ud::kNfcUnsafe, ud::kNfcUnsafeSize, cp)) c |= kNfcUnsafe;
  return c;
}

const std::array<uint8_t, 0x10000>& bmp_table() {
  static const auto table = [] {
    auto t = std::make_unique<std::array<uint8_t, 0x10000>>();
    for (uint32_t cp = 0; cp < 0x10000; ++cp) (*t)[cp] = compute_classes(cp);
    return t;
  }();
  return *table;
}

}  // namespace

uint8_t classes(uint32_t cp) {
  if (cp < 0x10000) return bmp_table()[cp];
  if (cp == kInvalid) return 0;
  return compute_classes(cp);
}

uint8_t combining_class(uint32_t cp) {
  const auto* r = ud::kCombiningClass;
  const auto* end = r + ud::kCombiningClassSize;
  auto it = std::upper_bound(r, end, cp, [](uint32_t v, const ud::CccRange& x) { return v < x.lo; });
  if (it == r || cp > (it - 1)->hi) return 0;
  return (it - 1)->ccc;
}

// --- NFC: canonical decomposition, canonical ordering, canonical composition -------------

namespace {

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {  // Hangul syllables are algorithmic
    uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto* d = ud::kDecomposition;
  const auto* end = d + ud::kDecompositionSize;
  auto it = std::lower_bound(d, end, cp, [](const ud::Decomposition& x, uint32_t v) { return x.cp < v; });
  if (it != end && it->cp == cp) {
    for (uint32_t k = 0; k < it->length; ++k) out.push_back(ud::kDecompositionData[it->offset + k]);
  } else {
    out.push_back(cp);
  }
}

uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto* c = ud::kComposition;
  const auto* end = c + ud::kCompositionSize;
  auto it = std::lower_bound(c, end, std::make_pair(a, b), [](const ud::Composition& x, std::pair<uint32_t, uint32_t> v) {
    return x.first < v.first || (x.first == v.first && x.second < v.second);
  });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

// NFC of a run of valid code points.
void nfc_run(const std::vector<uint32_t>& cps, std::string& out) {
  std::vector<uint32_t> d;
  d.reserve(cps.size() + 8);
  for (uint32_t cp : cps) decompose(cp, d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  std::vector<uint8_t> cc(d.size());
  for (size_t i = 0; i < d.size(); ++i) cc[i] = combining_class(d[i]);
  for (size_t i = 0; i < d.size();) {
    if (cc[i] == 0) { ++i; continue; }
    size_t j = i;
    while (j < d.size() && cc[j] != 0) ++j;
    for (size_t a = i + 1; a < j; ++a)  // insertion sort: runs are short, order must be stable
      for (size_t b = a; b > i && cc[b - 1] > cc[b]; --b) {
        std::swap(d[b - 1], d[b]);
        std::swap(cc[b - 1], cc[b]);
      }
    i = j;
  }
  // Composition: each character joins the last starter unless a character in between
  // with the same or higher class blocks it.
  std::vector<uint32_t> r;
  r.reserve(d.size());
  long starter = -1;
  int last_cc = -1;
  for (size_t i = 0; i < d.size(); ++i) {
    uint32_t ch = d[i];
    int c = cc[i];
    if (starter >= 0) {
      bool adjacent = long(r.size()) == starter + 1;
      if (adjacent || (last_cc != 0 && last_cc < c)) {
        if (uint32_t comp = compose(r[starter], ch)) {
          r[starter] = comp;
          continue;
        }
      }
    }
    if (c == 0) starter = long(r.size());
    last_cc = c;
    r.push_back(ch);
  }
  for (uint32_t cp : r) append_utf8(out, cp);
}

}  // namespace

bool is_nfc_quick(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    unsigned char b = s[pos];
    if (b < 0x80) { ++pos; continue; }
    uint32_t cp = decode_utf8(s, pos);
    if (cp != kInvalid && (classes(cp) & kNfcUnsafe)) return false;
  }
  return true;
}

std::string nfc(std::string_view s) {
  if (is_nfc_quick(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  std::vector<uint32_t> run;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t at = pos;
    uint32_t cp = decode_utf8(s, pos);
    if (cp == kInvalid) {  // invalid bytes end a run and are copied as they are
      nfc_run(run, out);
      run.clear();
      out.append(s.substr(at, pos - at));
    } else {
      run.push_back(cp);
    }
  }
  nfc_run(run, out);
  return out;
}

}  // namespace safetune::text::unicode
