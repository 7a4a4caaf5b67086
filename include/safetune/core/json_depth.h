// A nesting limit for JSON from untrusted files.
//
// nlohmann's parser itself is iterative, but copying and printing a parsed value recurse
// once per level, so a few hundred kilobytes of "[[[[..." would overflow the stack long
// after parsing succeeded. Real files (safetensors headers, config.json, tokenizer.json,
// datasets) nest a handful of levels; anything deeper is refused before parsing.
#pragma once
#include <cstddef>
#include <string_view>

namespace safetune {

constexpr size_t kMaxJsonDepth = 256;

// Byte offset of the bracket that takes `text` past `max_depth` nested arrays/objects, or
// std::string_view::npos. Brackets inside strings do not count; the text need not be
// valid JSON (the parser judges that).
size_t find_json_too_deep(std::string_view text, size_t max_depth = kMaxJsonDepth);

}  // namespace safetune
