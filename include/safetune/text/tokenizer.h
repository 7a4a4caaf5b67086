// One tokenizer interface over the formats HF models ship: tokenizer.json (byte-level
// BPE of GPT-2 / Llama-3 / Qwen2, and the SentencePiece-style BPE of Llama-2 / Mistral),
// and SentencePiece tokenizer.model files.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace safetune::text {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text to ids. Added/special tokens written literally in the text (e.g. "<|im_start|>")
  // are matched before the model runs, as HF tokenizers do. `add_bos` prepends the BOS
  // id when the tokenizer has one (chat templates usually write it themselves).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos = false) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const = 0;

  virtual std::string id_to_piece(int32_t id) const = 0;
  virtual std::optional<int32_t> piece_to_id(std::string_view piece) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // "bpe" (byte-level tokenizer.json), "spm_json" (SentencePiece-style tokenizer.json),
  // "sentencepiece" (tokenizer.model).
  virtual std::string kind() const = 0;

  std::optional<int32_t> bos_id, eos_id, pad_id;
};

// Builds the tokenizer of an HF model directory: tokenizer.json when present, else
// tokenizer.model; bos/eos/pad from tokenizer_config.json / special_tokens_map.json.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir);

}  // namespace safetune::text
