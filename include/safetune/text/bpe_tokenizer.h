// tokenizer.json (HF `tokenizers` format), implemented natively for the families that
// matter here:
//   - byte-level BPE: GPT-2, Llama-3, Qwen2/Qwen3 (ByteLevel / Split pre-tokenizers, NFC),
//   - SentencePiece-style BPE: Llama-2, Mistral (byte fallback, Metaspace or
//     Prepend+Replace normalizers, ByteFallback/Fuse/Strip decoders).
// Anything else (another model type, pre-tokenizer, normalizer, decoder, or an unknown
// split regex) is an InputError naming the component and the file.
#pragma once
#include <memory>
#include <string>

#include "safetune/text/tokenizer.h"

namespace safetune::text {

// Parses a tokenizer.json file (InputError naming `path` when it is malformed or uses
// components outside the families above).
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path);

// Same, from the file's text; `name` is used in error messages.
std::unique_ptr<Tokenizer> parse_tokenizer_json(const std::string& json_text, const std::string& name);

}  // namespace safetune::text
