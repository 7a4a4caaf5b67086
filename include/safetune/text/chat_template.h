// Chat templates: how a model family lays out a conversation as text.
//
// HF models ship a Jinja template in tokenizer_config.json. Rather than embed a Jinja
// interpreter, each family we support is written out here as plain code that produces the
// same string as that family's published template (the tests compare against it
// literally). A template is picked by name, or detected from markers in the model's
// tokenizer_config.json.
//
// Besides the full prompt, training needs two pieces of a template:
//  - assistant_header(): the text that opens an assistant turn. PACT's "post-only"
//    context is this header followed by the response prefix, with no system/user text.
//  - end_of_turn(): the text that closes an assistant turn; it is part of the trained
//    response, so the fine-tuned model learns to stop.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace safetune::text {

struct Message {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

class ChatTemplate {
 public:
  enum class Family { kPlain, kLlama2, kLlama3, kLlama31, kChatml, kMistral, kGemma, kQwen3, kPhi3 };

  explicit ChatTemplate(Family family);

  // "plain", "llama2", "llama3", "llama3.1", "chatml", "mistral", "gemma", "qwen3", "phi3"; anything else
  // is an InputError listing these.
  static ChatTemplate by_name(const std::string& name);
  static const std::vector<std::string>& names();

  const std::string& name() const { return name_; }
  Family family() const { return family_; }

  // The whole conversation as the family's template renders it, BOS text included where
  // the template writes it. With add_generation_prompt the text ends where the model's
  // reply begins. Roles must be: an optional leading system message, then user and
  // assistant alternating, starting with user (InputError otherwise).
  std::string render(const std::vector<Message>& messages, bool add_generation_prompt) const;

  // Text that opens an assistant turn (what the generation prompt appends after the last
  // user turn). Empty for llama2 / mistral, whose assistant turn follows "[/INST]".
  std::string assistant_header() const;

  // Text that closes an assistant turn, e.g. "<|eot_id|>", "<|im_end|>", " </s>". Empty
  // for plain (the trainer appends the tokenizer's EOS id instead).
  std::string end_of_turn() const;

  // What the template writes between assistant_header() and the response content: " "
  // for llama2 / mistral ("[/INST] answer"), empty otherwise.
  std::string response_prefix() const;

  // The assistant content as the template writes it inside the turn (llama2, llama3,
  // mistral and gemma trim surrounding whitespace; chatml and plain keep it; qwen3 writes
  // the final reply's think block, empty when the content has no "</think>").
  std::string format_response(std::string_view content) const;

  // The answer in a generated reply, as the template itself reads a reply back into a
  // conversation: for qwen3 the text after the last "</think>" (the reasoning before it
  // dropped, leading newlines too); the reply itself for the others. Evaluation judges
  // and scores this.
  std::string reply_content(std::string_view generated) const;

 private:
  Family family_;
  std::string name_;
};

// Picks a template from a model's tokenizer_config.json (a path to the file, or the
// model directory; a chat_template.jinja beside it is read too) by markers in its
// chat_template: "<|start_header_id|>" -> llama3 (llama3.1 when the template writes the
// "Cutting Knowledge Date" system block), "<|im_start|>" -> chatml (qwen3 when it also
// writes "<think>"), "<start_of_turn>" ->
// gemma, "[INST]" with "<<SYS>>" -> llama2, other "[INST]" -> mistral. No template, or
// one without known markers: plain, with a warning.
ChatTemplate detect_chat_template(const std::string& path_or_dir);

// `name` "auto" (or empty) detects from the model directory; otherwise by_name(name).
ChatTemplate resolve_chat_template(const std::string& name, const std::string& model_dir);

}  // namespace safetune::text
