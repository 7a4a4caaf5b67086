// tokenizer.json, natively: the BPE model with the normalizers, pre-tokenizers and
// decoders that GPT-2, Llama-3, Qwen2/Qwen3 (byte-level) and Llama-2/Mistral/Gemma 3
// (SentencePiece-style, byte fallback) ship with.
//
// Encoding, as HF tokenizers does it:
//   1. added tokens ("<|im_start|>", "<s>", ...) are cut out of the raw text first,
//      leftmost-longest; they map straight to their ids;
//   2. each remaining segment is normalized (NFC, Prepend, Replace),
//   3. pre-tokenized into words (the family's split regex, a literal Split, Metaspace),
//   4. each word is BPE-merged by rank (lowest rank first, leftmost on ties).
// Byte-level models work on raw bytes throughout: GPT-2's byte-to-unicode map only
// matters for reading the vocab and merges (and for showing pieces), so the vocab is
// re-keyed by the bytes each piece stands for.
//
// The split regexes are not run by a regex engine: the three published patterns (GPT-2's
// and the Llama-3/Qwen2 one with \p{N}{1,3} or \p{N}) are recognised by their text and
// matched by hand-written scanners below, alternative by alternative, with the same
// leftmost-first semantics (including the backtracking of \s+(?!\S)). An unknown pattern
// is an error naming it, not a silent approximation.
#include "safetune/text/bpe_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <mutex>
#include <unordered_map>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/json.h"
#include "safetune/core/json_depth.h"
#include "safetune/text/unicode.h"

namespace safetune::text {
namespace {

using json = nlohmann::json;
namespace uc = unicode;

// --- GPT-2's byte <-> unicode map ---------------------------------------------------------
// Printable Latin-1 bytes map to themselves; the other 68 bytes to U+0100.. in order, so
// that every byte is a visible character in vocab files.
struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 512> to_byte{};  // code point (< 512) -> byte, -1 when unmapped
  ByteMap() {
    to_byte.fill(-1);
    uint32_t extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_cp[b] = printable ? uint32_t(b) : 256 + extra++;
      to_byte[to_cp[b]] = int16_t(b);
    }
  }
  // The bytes a byte-level piece stands for; false if a character is not in the map.
  bool decode(std::string_view piece, std::string& out) const {
    out.clear();
    size_t pos = 0;
    while (pos < piece.size()) {
      uint32_t cp = uc::decode_utf8(piece, pos);
      if (cp >= to_byte.size() || to_byte[cp] < 0) return false;
      out.push_back(char(to_byte[cp]));
    }
    return true;
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// --- merges: (left id, right id) -> (rank, merged id), open addressing ----------------------
class PairMap {
 public:
  struct Value { int32_t rank, id; };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    keys_.assign(cap, kEmpty);
    vals_.assign(cap, Value{0, 0});
    mask_ = cap - 1;
  }
  void insert(uint64_t key, Value v) {  // a later duplicate wins, as in HF
    size_t i = slot(key);
    while (keys_[i] != kEmpty && keys_[i] != key) i = (i + 1) & mask_;
    keys_[i] = key;
    vals_[i] = v;
  }
  const Value* find(uint64_t key) const {
    if (keys_.empty()) return nullptr;
    size_t i = slot(key);
    while (keys_[i] != kEmpty) {
      if (keys_[i] == key) return &vals_[i];
      i = (i + 1) & mask_;
    }
    return nullptr;
  }
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  size_t slot(uint64_t k) const { return size_t((k * 0x9E3779B97F4A7C15ull) >> 20) & mask_; }
  std::vector<uint64_t> keys_;
  std::vector<Value> vals_;
  size_t mask_ = 0;
};

// --- split regexes ---------------------------------------------------------------------------
// kLiteral: Split on a fixed string (Gemma 3: " ", behaviour MergedWithPrevious, the
// delimiter ending the piece before it; Isolated: a piece of its own).
enum class SplitKind { kGpt2, kCl100k, kLiteral };
struct SplitRule {
  SplitKind kind;
  int max_digits = 0;  // \p{N}{1,k} in the Llama-3 pattern, 1 in Qwen2's \p{N}, 0 = unbounded
  std::string literal;
  bool merged_with_previous = false;
};

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::optional<SplitRule> recognise_pattern(const std::string& p) {
  if (p == kGpt2Pattern) return SplitRule{SplitKind::kGpt2, 0};
  auto cl100k = [](const std::string& digits) {
    return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|)" + digits +
           R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  };
  if (p == cl100k(R"(\p{N})")) return SplitRule{SplitKind::kCl100k, 1};
  for (int k = 1; k <= 9; ++k)
    if (p == cl100k(R"(\p{N}{1,)" + std::to_string(k) + "}")) return SplitRule{SplitKind::kCl100k, k};
  return std::nullopt;
}

// A segment decoded once into code points, classes and byte offsets, for the scanners.
struct Decoded {
  std::vector<uint32_t> cp;
  std::vector<uint8_t> cls;
  std::vector<uint32_t> off;  // byte offset of each code point, plus the end
  void assign(std::string_view s) {
    cp.clear(); cls.clear(); off.clear();
    size_t pos = 0;
    while (pos < s.size()) {
      off.push_back(uint32_t(pos));
      unsigned char b = s[pos];
      uint32_t c;
      if (b < 0x80) { c = b; ++pos; }
      else c = uc::decode_utf8(s, pos);  // invalid bytes: one "other" character each
      cp.push_back(c);
      cls.push_back(uc::classes(c));
    }
    off.push_back(uint32_t(s.size()));
  }
};

constexpr uint8_t kL = uc::kLetter, kN = uc::kNumber, kS = uc::kSpace;
inline bool is_other(uint8_t c) { return !(c & (kL | kN | kS)); }
inline uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// Whitespace alternatives shared by both patterns, at i where cls[i] is \s:
// [\s*[\r\n]+ (cl100k only)] | \s+(?!\S) | \s+
size_t match_space(const Decoded& d, size_t i, bool newline_rule) {
  size_t n = d.cp.size(), j = i;
  while (j < n && (d.cls[j] & kS)) ++j;
  if (newline_rule)
    for (size_t k = j; k > i; --k)
      if (d.cp[k - 1] == '\r' || d.cp[k - 1] == '\n') return k;
  if (j == n) return j;          // \s+ up to the end: no \S follows
  if (j - i >= 2) return j - 1;  // leave the last space to prefix the next word
  return j;                      // \s+
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t match_gpt2(const Decoded& d, size_t i) {
  size_t n = d.cp.size();
  uint32_t c0 = d.cp[i];
  if (c0 == '\'' && i + 1 < n) {
    uint32_t a = d.cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n) {
      uint32_t b = d.cp[i + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  size_t s = (c0 == ' ' && i + 1 < n) ? i + 1 : i;
  uint8_t c = d.cls[s];
  if (c & kL) { while (s < n && (d.cls[s] & kL)) ++s; return s; }
  if (c & kN) { while (s < n && (d.cls[s] & kN)) ++s; return s; }
  if (is_other(c)) { while (s < n && is_other(d.cls[s])) ++s; return s; }
  return match_space(d, i, false);
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,k}| ?[^\s\p{L}\p{N}]+[\r\n]*
//   |\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_cl100k(const Decoded& d, size_t i, int max_digits) {
  size_t n = d.cp.size();
  uint32_t c0 = d.cp[i];
  if (c0 == '\'' && i + 1 < n) {
    uint32_t a = ascii_lower(d.cp[i + 1]);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n) {
      uint32_t b = ascii_lower(d.cp[i + 2]);
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  uint8_t c = d.cls[i];
  {
    size_t j = i;
    if (!(c & (kL | kN)) && c0 != '\r' && c0 != '\n' && i + 1 < n && (d.cls[i + 1] & kL)) j = i + 1;
    if (d.cls[j] & kL) {
      while (j < n && (d.cls[j] & kL)) ++j;
      return j;
    }
  }
  if (c & kN) {
    size_t j = i;
    while (j < n && (d.cls[j] & kN) && (max_digits == 0 || j - i < size_t(max_digits))) ++j;
    return j;
  }
  {
    size_t j = (c0 == ' ' && i + 1 < n) ? i + 1 : i;
    if (is_other(d.cls[j])) {
      while (j < n && is_other(d.cls[j])) ++j;
      while (j < n && (d.cp[j] == '\r' || d.cp[j] == '\n')) ++j;
      return j;
    }
  }
  return match_space(d, i, true);
}

// --- the tokenizer ----------------------------------------------------------------------------

struct AddedToken {
  std::string content;
  int32_t id;
  bool special, lstrip, rstrip;
};

// A byte trie over the added tokens' contents, for leftmost-longest matching.
struct Trie {
  struct Node {
    std::unordered_map<unsigned char, int32_t> next;
    int32_t token = -1;  // index into the added tokens, -1 if none ends here
  };
  std::vector<Node> nodes{1};
  std::array<bool, 256> first{};
  void insert(const std::string& s, int32_t token) {
    if (s.empty()) return;
    first[static_cast<unsigned char>(s[0])] = true;
    int32_t at = 0;
    for (unsigned char ch : s) {
      auto it = nodes[at].next.find(ch);
      if (it == nodes[at].next.end()) {
        nodes.emplace_back();
        int32_t fresh = int32_t(nodes.size() - 1);
        nodes[at].next.emplace(ch, fresh);
        at = fresh;
      } else {
        at = it->second;
      }
    }
    nodes[at].token = token;
  }
  // The longest token starting at text[pos]: (token index, length), or (-1, 0).
  std::pair<int32_t, size_t> longest(std::string_view text, size_t pos) const {
    if (!first[static_cast<unsigned char>(text[pos])]) return {-1, 0};
    int32_t at = 0, best = -1;
    size_t best_len = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      auto it = nodes[at].next.find(static_cast<unsigned char>(text[i]));
      if (it == nodes[at].next.end()) break;
      at = it->second;
      if (nodes[at].token >= 0) { best = nodes[at].token; best_len = i + 1 - pos; }
    }
    return {best, best_len};
  }
};

struct NormOp {
  enum Type { kNfc, kPrepend, kReplace } type;
  std::string a, b;  // Prepend: a; Replace: a -> b
};

struct DecOp {
  enum Type { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } type;
  std::string a, b;  // Replace: a -> b; Strip: a = content; Metaspace: a = replacement
  int start = 0, stop = 0;
  bool prepend = true;  // Metaspace: strip the space it prepended from the first token
};

enum class Prepend { kAlways, kFirst, kNever };

std::string replace_all(std::string_view s, const std::string& from, const std::string& to) {
  std::string out;
  if (from.empty()) return std::string(s);
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

class JsonBpeTokenizer final : public Tokenizer {
 public:
  JsonBpeTokenizer(const json& root, const std::string& name);

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  std::string id_to_piece(int32_t id) const override {
    return (id >= 0 && size_t(id) < pieces_.size()) ? pieces_[id] : std::string();
  }
  std::optional<int32_t> piece_to_id(std::string_view piece) const override {
    auto it = piece_ids_.find(std::string(piece));
    if (it == piece_ids_.end()) return std::nullopt;
    return it->second;
  }
  int64_t vocab_size() const override { return int64_t(pieces_.size()); }
  bool is_special(int32_t id) const override {
    return id >= 0 && size_t(id) < special_.size() && special_[id];
  }
  std::string kind() const override { return byte_level_ ? "bpe" : "spm_json"; }

 private:
  void parse_model(const json& model, const std::string& name);
  void parse_normalizer(const json& n, const std::string& name);
  void parse_pre_tokenizer(const json& p, const std::string& name, bool top);
  void parse_decoder(const json& d, const std::string& name);
  void encode_segment(std::string_view seg, bool at_start, std::vector<int32_t>& out) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  std::optional<int32_t> word_id(std::string_view bytes) const {
    auto it = word_ids_.find(std::string(bytes));
    if (it == word_ids_.end()) return std::nullopt;
    return it->second;
  }

  bool byte_level_ = false;
  std::vector<std::string> pieces_;                       // id -> piece as in the file
  std::unordered_map<std::string, int32_t> piece_ids_;    // piece -> id (vocab + added)
  std::unordered_map<std::string, int32_t> word_ids_;     // bytes a piece stands for -> id
  std::array<int32_t, 256> byte_ids_{};                   // byte-level: the piece of one byte
  std::array<int32_t, 256> fallback_ids_{};               // "<0xXX>" pieces, -1 if absent
  PairMap merges_;
  bool ignore_merges_ = false, byte_fallback_ = false, fuse_unk_ = false;
  std::optional<int32_t> unk_;

  std::vector<AddedToken> added_;
  Trie trie_;
  std::vector<bool> special_;

  std::vector<NormOp> norm_;
  bool prefix_space_ = false;  // ByteLevel add_prefix_space
  bool metaspace_ = false, metaspace_split_ = false;
  std::string metaspace_rep_;
  Prepend metaspace_prepend_ = Prepend::kAlways;
  std::vector<SplitRule> splits_;
  std::vector<DecOp> dec_;

  // Words seen before: most text repeats a small set of words, so BPE runs once per word.
  static constexpr size_t kMaxCachedWord = 64, kMaxCacheEntries = 1 << 18;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

const json& field(const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) input_error(where, std::string("missing field '") + key + "'");
  return obj.at(key);
}

// Token ids are capped like config.json's vocab_size: the piece table is sized by the
// largest id, so a tiny file must not be able to demand gigabytes.
constexpr int64_t kMaxTokenId = (1 << 22) - 1;

// An integer within [lo, hi]. nlohmann's get<int>() would wrap a large value past the
// range check and is undefined behaviour for a float such as 1e100.
int64_t int_in(const json& v, const std::string& where, const std::string& what, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) input_error(where, what + " must be an integer, got " + v.type_name());
  const bool too_big = v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(hi) : v.get<int64_t>() > hi;
  if (too_big || (!v.is_number_unsigned() && v.get<int64_t>() < lo))
    input_error(where, what + " " + v.dump() + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v.get<int64_t>();
}

std::string type_of(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    input_error(where, "component without a \"type\" string");
  return j["type"].get<std::string>();
}

JsonBpeTokenizer::JsonBpeTokenizer(const json& root, const std::string& name) {
  if (!root.is_object()) input_error(name, "not a tokenizer.json (top level is not an object)");
  // The pre-tokenizer decides whether the model is byte-level, which the vocab needs.
  if (root.contains("pre_tokenizer") && !root["pre_tokenizer"].is_null())
    parse_pre_tokenizer(root["pre_tokenizer"], name, true);
  if (root.contains("normalizer") && !root["normalizer"].is_null()) parse_normalizer(root["normalizer"], name);
  if (root.contains("decoder") && !root["decoder"].is_null()) parse_decoder(root["decoder"], name);
  parse_model(field(root, "model", name), name);

  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const json& list = root["added_tokens"];
    if (!list.is_array()) input_error(name, "added_tokens is not an array");
    for (const json& t : list) {
      AddedToken a;
      a.content = field(t, "content", name + ": added_tokens").get<std::string>();
      a.id = int32_t(int_in(field(t, "id", name + ": added_tokens"), name, "added token id", 0, kMaxTokenId));
      a.special = t.value("special", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      if (size_t(a.id) >= pieces_.size()) pieces_.resize(size_t(a.id) + 1);
      pieces_[a.id] = a.content;
      piece_ids_[a.content] = a.id;
      if (special_.size() < pieces_.size()) special_.resize(pieces_.size(), false);
      special_[a.id] = a.special;
      trie_.insert(a.content, int32_t(added_.size()));
      added_.push_back(std::move(a));
    }
  }
  special_.resize(pieces_.size(), false);
}

void JsonBpeTokenizer::parse_model(const json& model, const std::string& name) {
  std::string where = name + ": model";
  std::string type = model.is_object() && model.contains("type") && model["type"].is_string()
                         ? model["type"].get<std::string>()
                         : (model.is_object() && model.contains("merges") ? "BPE" : "?");
  if (type != "BPE")
    input_error(name, "unsupported tokenizer model type '" + type + "' (only BPE is implemented)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(k) && model[k].is_string() && !model[k].get<std::string>().empty())
      input_error(where, std::string("unsupported BPE option ") + k);
  ignore_merges_ = model.value("ignore_merges", false);
  byte_fallback_ = model.value("byte_fallback", false);
  fuse_unk_ = model.value("fuse_unk", false);

  const json& vocab = field(model, "vocab", where);
  if (!vocab.is_object()) input_error(where, "vocab is not an object of piece -> id");
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int32_t id = int32_t(int_in(it.value(), where, "vocab id of '" + it.key() + "'", 0, kMaxTokenId));
    max_id = std::max(max_id, id);
  }
  pieces_.assign(size_t(max_id + 1), std::string());
  piece_ids_.reserve(vocab.size() * 2);
  word_ids_.reserve(vocab.size() * 2);
  const ByteMap& bm = byte_map();
  std::string bytes;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int32_t id = it.value().get<int32_t>();
    pieces_[id] = it.key();
    piece_ids_[it.key()] = id;
    if (!byte_level_) word_ids_[it.key()] = id;
    else if (bm.decode(it.key(), bytes)) word_ids_[bytes] = id;
  }
  byte_ids_.fill(-1);
  fallback_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    if (auto id = word_id(std::string(1, char(b))); byte_level_ && id) byte_ids_[b] = *id;
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    if (auto it = piece_ids_.find(hex); it != piece_ids_.end()) fallback_ids_[b] = it->second;
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = piece_ids_.find(model["unk_token"].get<std::string>());
    if (it == piece_ids_.end()) input_error(where, "unk_token '" + model["unk_token"].get<std::string>() + "' is not in the vocab");
    unk_ = it->second;
  }

  const json& merges = field(model, "merges", where);
  if (!merges.is_array()) input_error(where, "merges is not an array");
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& m = merges[r];
    std::string a, b;
    if (m.is_string()) {  // "a b"
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        input_error(where, "merge " + std::to_string(r) + " is not two pieces separated by one space: '" + s + "'");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      input_error(where, "merge " + std::to_string(r) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    auto ia = piece_ids_.find(a), ib = piece_ids_.find(b), iab = piece_ids_.find(a + b);
    if (ia == piece_ids_.end() || ib == piece_ids_.end() || iab == piece_ids_.end())
      input_error(where, "merge " + std::to_string(r) + " ('" + a + "' + '" + b + "') uses a piece that is not in the vocab");
    merges_.insert(PairMap::key(ia->second, ib->second), {int32_t(r), iab->second});
  }
}

void JsonBpeTokenizer::parse_normalizer(const json& n, const std::string& name) {
  std::string type = type_of(n, name + ": normalizer");
  if (type == "Sequence") {
    for (const json& x : field(n, "normalizers", name + ": normalizer")) parse_normalizer(x, name);
  } else if (type == "NFC") {
    norm_.push_back({NormOp::kNfc, "", ""});
  } else if (type == "Prepend") {
    norm_.push_back({NormOp::kPrepend, field(n, "prepend", name + ": normalizer").get<std::string>(), ""});
  } else if (type == "Replace") {
    const json& pat = field(n, "pattern", name + ": normalizer Replace");
    if (!pat.contains("String"))
      input_error(name, "unsupported normalizer Replace pattern " + pat.dump() + " (only String patterns)");
    norm_.push_back({NormOp::kReplace, pat["String"].get<std::string>(),
                     field(n, "content", name + ": normalizer Replace").get<std::string>()});
  } else {
    input_error(name, "unsupported normalizer '" + type + "'");
  }
}

void JsonBpeTokenizer::parse_pre_tokenizer(const json& p, const std::string& name, bool top) {
  std::string type = type_of(p, name + ": pre_tokenizer");
  auto before_splits = [&](const char* what) {
    if (!splits_.empty() || metaspace_split_)
      input_error(name, std::string("unsupported pre_tokenizer order: ") + what + " after a split");
  };
  if (type == "Sequence") {
    for (const json& x : field(p, "pretokenizers", name + ": pre_tokenizer")) parse_pre_tokenizer(x, name, false);
  } else if (type == "ByteLevel") {
    byte_level_ = true;
    if (p.value("add_prefix_space", false)) {
      before_splits("ByteLevel add_prefix_space");
      prefix_space_ = true;
    }
    if (p.value("use_regex", true)) splits_.push_back({SplitKind::kGpt2, 0});
  } else if (type == "Split") {
    const json& pat = field(p, "pattern", name + ": pre_tokenizer Split");
    std::string behavior = p.value("behavior", std::string("Isolated"));
    if (pat.contains("String") && pat["String"].is_string() && !pat["String"].get<std::string>().empty() &&
        (behavior == "MergedWithPrevious" || behavior == "Isolated") && !p.value("invert", false)) {
      SplitRule r{SplitKind::kLiteral};
      r.literal = pat["String"].get<std::string>();
      r.merged_with_previous = behavior == "MergedWithPrevious";
      splits_.push_back(r);
      return;
    }
    if (!pat.contains("Regex") || behavior != "Isolated" || p.value("invert", false))
      input_error(name, "unsupported Split pre_tokenizer " + pat.dump() + " behavior " + behavior);
    auto rule = recognise_pattern(pat["Regex"].get<std::string>());
    if (!rule) input_error(name, "unsupported Split pre_tokenizer regex " + pat["Regex"].dump());
    splits_.push_back(*rule);
  } else if (type == "Metaspace") {
    before_splits("Metaspace");
    metaspace_ = true;
    metaspace_rep_ = p.value("replacement", std::string("\xE2\x96\x81"));
    std::string scheme = p.value("prepend_scheme", std::string(p.value("add_prefix_space", true) ? "always" : "never"));
    if (scheme == "always") metaspace_prepend_ = Prepend::kAlways;
    else if (scheme == "first") metaspace_prepend_ = Prepend::kFirst;
    else if (scheme == "never") metaspace_prepend_ = Prepend::kNever;
    else input_error(name, "unsupported Metaspace prepend_scheme '" + scheme + "'");
    metaspace_split_ = p.value("split", true);
  } else {
    input_error(name, "unsupported pre_tokenizer '" + type + "'");
  }
}

void JsonBpeTokenizer::parse_decoder(const json& d, const std::string& name) {
  std::string type = type_of(d, name + ": decoder");
  std::string where = name + ": decoder " + type;
  DecOp op{};
  if (type == "Sequence") {
    for (const json& x : field(d, "decoders", name + ": decoder")) parse_decoder(x, name);
    return;
  } else if (type == "ByteLevel") {
    op.type = DecOp::kByteLevel;
  } else if (type == "Replace") {
    const json& pat = field(d, "pattern", where);
    if (!pat.contains("String")) input_error(name, "unsupported decoder Replace pattern " + pat.dump());
    op.type = DecOp::kReplace;
    op.a = pat["String"].get<std::string>();
    op.b = field(d, "content", where).get<std::string>();
  } else if (type == "ByteFallback") {
    op.type = DecOp::kByteFallback;
  } else if (type == "Fuse") {
    op.type = DecOp::kFuse;
  } else if (type == "Strip") {
    op.type = DecOp::kStrip;
    op.a = field(d, "content", where).get<std::string>();
    // Counts of `content` to strip; bounded so that decoding stays linear in the text.
    op.start = d.contains("start") ? int(int_in(d["start"], where, "start", 0, 1 << 16)) : 0;
    op.stop = d.contains("stop") ? int(int_in(d["stop"], where, "stop", 0, 1 << 16)) : 0;
    if (op.a.empty()) return;  // stripping "" is a no-op
  } else if (type == "Metaspace") {
    op.type = DecOp::kMetaspace;
    op.a = d.value("replacement", std::string("\xE2\x96\x81"));
    std::string scheme = d.value("prepend_scheme", std::string(d.value("add_prefix_space", true) ? "always" : "never"));
    op.prepend = scheme != "never";
  } else {
    input_error(name, "unsupported decoder '" + type + "'");
  }
  dec_.push_back(std::move(op));
}

std::vector<int32_t> JsonBpeTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_bos && bos_id) out.push_back(*bos_id);
  // Cut out added tokens; lstrip/rstrip tokens swallow the whitespace beside them.
  size_t seg_start = 0, pos = 0;
  auto flush = [&](size_t end) {
    if (end > seg_start) encode_segment(text.substr(seg_start, end - seg_start), seg_start == 0, out);
  };
  while (pos < text.size()) {
    auto [tok, len] = trie_.longest(text, pos);
    if (tok < 0) { ++pos; continue; }
    const AddedToken& a = added_[tok];
    size_t left = pos, right = pos + len;
    if (a.lstrip)
      while (left > seg_start && (text[left - 1] == ' ' || text[left - 1] == '\t' || text[left - 1] == '\n' || text[left - 1] == '\r')) --left;
    if (a.rstrip)
      while (right < text.size() && (text[right] == ' ' || text[right] == '\t' || text[right] == '\n' || text[right] == '\r')) ++right;
    flush(left);
    out.push_back(a.id);
    seg_start = pos = right;
  }
  flush(text.size());
  return out;
}

void JsonBpeTokenizer::encode_segment(std::string_view seg, bool at_start, std::vector<int32_t>& out) const {
  // Normalize.
  std::string norm_buf;
  std::string_view s = seg;
  for (const NormOp& op : norm_) {
    switch (op.type) {
      case NormOp::kNfc:
        if (!uc::is_nfc_quick(s)) { norm_buf = uc::nfc(s); s = norm_buf; }
        break;
      case NormOp::kPrepend:
        if (!s.empty()) { norm_buf = op.a + std::string(s); s = norm_buf; }
        break;
      case NormOp::kReplace:
        if (s.find(op.a) != std::string_view::npos) { norm_buf = replace_all(s, op.a, op.b); s = norm_buf; }
        break;
    }
  }
  // Pre-tokenizer transforms that precede any split.
  std::string pre_buf;
  if (prefix_space_ && (s.empty() || s[0] != ' ')) { pre_buf = " " + std::string(s); s = pre_buf; }
  if (metaspace_) {
    pre_buf = replace_all(s, " ", metaspace_rep_);
    bool prepend = metaspace_prepend_ == Prepend::kAlways || (metaspace_prepend_ == Prepend::kFirst && at_start);
    if (prepend && pre_buf.compare(0, metaspace_rep_.size(), metaspace_rep_) != 0) pre_buf.insert(0, metaspace_rep_);
    s = pre_buf;
  }
  if (s.empty()) return;

  // Split into words.
  thread_local std::vector<std::pair<size_t, size_t>> words, next;
  thread_local Decoded dec;
  words.clear();
  if (metaspace_ && metaspace_split_) {  // each replacement character starts a new word
    size_t start = 0, at = s.find(metaspace_rep_, 1);
    while (at != std::string_view::npos) {
      words.emplace_back(start, at - start);
      start = at;
      at = s.find(metaspace_rep_, at + metaspace_rep_.size());
    }
    words.emplace_back(start, s.size() - start);
  } else {
    words.emplace_back(0, s.size());
  }
  for (const SplitRule& rule : splits_) {
    next.clear();
    for (auto [wstart, wlen] : words) {
      std::string_view w = s.substr(wstart, wlen);
      if (rule.kind == SplitKind::kLiteral) {
        size_t from = 0, at;
        while ((at = w.find(rule.literal, from)) != std::string_view::npos) {
          const size_t end = at + rule.literal.size();
          if (rule.merged_with_previous) {
            next.emplace_back(wstart + from, end - from);
          } else {
            if (at > from) next.emplace_back(wstart + from, at - from);
            next.emplace_back(wstart + at, rule.literal.size());
          }
          from = end;
        }
        if (from < w.size()) next.emplace_back(wstart + from, w.size() - from);
        continue;
      }
      dec.assign(w);
      size_t n = dec.cp.size(), i = 0;
      while (i < n) {
        size_t j = rule.kind == SplitKind::kGpt2 ? match_gpt2(dec, i) : match_cl100k(dec, i, rule.max_digits);
        next.emplace_back(wstart + dec.off[i], dec.off[j] - dec.off[i]);
        i = j;
      }
    }
    words.swap(next);
  }
  for (auto [wstart, wlen] : words) encode_word(s.substr(wstart, wlen), out);
}

void JsonBpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() > kMaxCachedWord) { bpe(word, out); return; }
  std::string key(word);
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t before = out.size();
  bpe(word, out);
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::move(key), std::vector<int32_t>(out.begin() + before, out.end()));
}

// BPE of one word: start from single characters (bytes, for byte-level models), then
// repeatedly merge the adjacent pair with the lowest rank, leftmost first on ties. A heap
// of candidate merges with lazy invalidation keeps this O(n log n) for long words (a
// SentencePiece-style model sees a whole sentence as one word).
void JsonBpeTokenizer::bpe(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    if (auto id = word_id(word)) { out.push_back(*id); return; }
  }
  struct Sym { int32_t id, prev, next; bool alive; };
  thread_local std::vector<Sym> syms;
  syms.clear();
  auto push = [&](int32_t id) {
    int32_t i = int32_t(syms.size());
    syms.push_back({id, i - 1, -1, true});
    if (i > 0) syms[i - 1].next = i;
  };
  if (byte_level_) {
    for (unsigned char b : word)
      if (byte_ids_[b] >= 0) push(byte_ids_[b]);
  } else {
    size_t pos = 0;
    while (pos < word.size()) {
      size_t at = pos;
      uc::decode_utf8(word, pos);
      std::string_view ch = word.substr(at, pos - at);
      if (auto id = word_id(ch)) { push(*id); continue; }
      bool all_bytes = byte_fallback_;
      for (unsigned char b : ch) all_bytes = all_bytes && fallback_ids_[b] >= 0;
      if (all_bytes) {
        for (unsigned char b : ch) push(fallback_ids_[b]);
      } else if (unk_) {
        if (!(fuse_unk_ && !syms.empty() && syms.back().id == *unk_)) push(*unk_);
      }
    }
  }
  if (syms.size() > 1) {
    struct Cand { int32_t rank, pos, id; };
    auto worse = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
    thread_local std::vector<Cand> heap;
    heap.clear();
    auto consider = [&](int32_t i) {
      int32_t j = syms[i].next;
      if (j < 0) return;
      if (const auto* m = merges_.find(PairMap::key(syms[i].id, syms[j].id))) {
        heap.push_back({m->rank, i, m->id});
        std::push_heap(heap.begin(), heap.end(), worse);
      }
    };
    for (int32_t i = 0; i + 1 < int32_t(syms.size()); ++i) consider(i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), worse);
      Cand c = heap.back();
      heap.pop_back();
      Sym& s = syms[c.pos];
      if (!s.alive || s.next < 0) continue;
      const auto* m = merges_.find(PairMap::key(s.id, syms[s.next].id));
      if (!m || m->rank != c.rank) continue;  // stale: the pair here changed since
      int32_t gone = s.next;
      s.id = c.id;
      syms[gone].alive = false;
      s.next = syms[gone].next;
      if (s.next >= 0) syms[s.next].prev = c.pos;
      if (s.prev >= 0) consider(s.prev);
      consider(c.pos);
    }
  }
  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

std::string JsonBpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= pieces_.size()) continue;
    if (skip_special && is_special(id)) continue;
    toks.push_back(pieces_[id]);
  }
  const ByteMap& bm = byte_map();
  for (const DecOp& op : dec_) {
    switch (op.type) {
      case DecOp::kByteLevel: {
        std::string all, bytes;
        for (const std::string& t : toks) {
          if (bm.decode(t, bytes)) all += bytes;
          else all += t;
        }
        toks.assign(1, uc::to_valid_utf8(all));
        break;
      }
      case DecOp::kReplace:
        for (std::string& t : toks) t = replace_all(t, op.a, op.b);
        break;
      case DecOp::kByteFallback: {
        std::vector<std::string> res;
        std::string bytes;
        auto flush = [&] {
          if (bytes.empty()) return;
          if (uc::find_invalid_utf8(bytes) == std::string::npos) res.push_back(bytes);
          else for (size_t k = 0; k < bytes.size(); ++k) res.push_back("\xEF\xBF\xBD");
          bytes.clear();
        };
        for (const std::string& t : toks) {
          unsigned v;
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::sscanf(t.c_str() + 3, "%2x", &v) == 1) {
            bytes.push_back(char(v));
          } else {
            flush();
            res.push_back(t);
          }
        }
        flush();
        toks.swap(res);
        break;
      }
      case DecOp::kFuse: {
        std::string all;
        for (const std::string& t : toks) all += t;
        toks.assign(1, all);
        break;
      }
      case DecOp::kStrip:
        for (std::string& t : toks) {
          int k = 0;
          size_t b = 0, e = t.size();
          while (k < op.start && e - b >= op.a.size() && t.compare(b, op.a.size(), op.a) == 0) { b += op.a.size(); ++k; }
          k = 0;
          while (k < op.stop && e - b >= op.a.size() && t.compare(e - op.a.size(), op.a.size(), op.a) == 0) { e -= op.a.size(); ++k; }
          t = t.substr(b, e - b);
        }
        break;
      case DecOp::kMetaspace:
        for (size_t i = 0; i < toks.size(); ++i) {
          toks[i] = replace_all(toks[i], op.a, " ");
          if (i == 0 && op.prepend && !toks[i].empty() && toks[i][0] == ' ') toks[i].erase(0, 1);
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : toks) out += t;
  return uc::to_valid_utf8(out);
}

}  // namespace

std::unique_ptr<Tokenizer> parse_tokenizer_json(const std::string& json_text, const std::string& name) {
  // Components are printed into error messages (dump() recurses once per level).
  if (find_json_too_deep(json_text) != std::string::npos)
    input_error(name, "JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  json root = parse_json(json_text, name);
  try {
    return std::make_unique<JsonBpeTokenizer>(root, name);
  } catch (const json::exception& e) {  // a field of the wrong type
    std::string what = e.what();
    input_error(name, "unexpected tokenizer.json content: " + what.substr(0, what.find('\n')));
  }
}

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path) {
  return parse_tokenizer_json(read_file(path), path);
}

}  // namespace safetune::text
