// The chat templates of the families we train, written out as code. Each render function
// follows the family's published Jinja template (named in its comment) branch by branch,
// for the conversations we accept: an optional leading system message, then user and
// assistant turns alternating (tool calls and other roles are not supported).
#include "safetune/text/chat_template.h"

#include <filesystem>

#include <nlohmann/json.hpp>
#include "safetune/core/log.h"

#include "safetune/core/error.h"
#include "safetune/core/fs.h"

namespace safetune::text {
namespace {

using Family = ChatTemplate::Family;

struct Entry {
  const char* name;
  Family family;
};
constexpr Entry kTemplates[] = {
    {"plain", Family::kPlain},   {"llama2", Family::kLlama2},   {"llama3", Family::kLlama3},
    {"llama3.1", Family::kLlama31}, {"chatml", Family::kChatml}, {"mistral", Family::kMistral},
    {"gemma", Family::kGemma},   {"qwen3", Family::kQwen3},     {"phi3", Family::kPhi3},
};

// Jinja's `trim` / Python's str.strip(): ASCII whitespace and the information separators
// \x1c-\x1f that str.isspace() also counts (non-ASCII spaces are kept).
std::string trim(std::string_view s) {
  auto space = [](unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); };
  size_t b = 0, e = s.size();
  while (b < e && space(s[b])) ++b;
  while (e > b && space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// Splits off the optional leading system message and checks that the rest alternates
// user/assistant starting with user, as the published templates require (most raise
// "Conversation roles must alternate user/assistant/user/assistant/...").
struct Turns {
  const Message* system = nullptr;
  std::vector<const Message*> rest;
};

Turns split_turns(const std::vector<Message>& messages, const std::string& name) {
  const std::string where = "chat template " + name;
  if (messages.empty()) input_error(where, "no messages to render");
  Turns t;
  size_t i = 0;
  if (messages[0].role == "system") t.system = &messages[i++];
  for (size_t k = 0; i < messages.size(); ++i, ++k) {
    const std::string& want = k % 2 == 0 ? "user" : "assistant";
    if (messages[i].role != want)
      input_error(where, "message " + std::to_string(i) + " has role '" + messages[i].role +
                             "', expected '" + want +
                             "' (an optional system message, then user and assistant alternating)");
    t.rest.push_back(&messages[i]);
  }
  if (t.rest.empty()) input_error(where, "a conversation needs at least one user message");
  return t;
}

// Meta-Llama-3-8B-Instruct (tokenizer_config.json): every message, system included when
// given, is "<|start_header_id|>role<|end_header_id|>\n\n" + content|trim + "<|eot_id|>";
// bos_token before the first.
std::string render_llama3(const Turns& t, bool gen) {
  std::string out = "<|begin_of_text|>";
  auto turn = [&](const std::string& role, const std::string& content) {
    out += "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + trim(content) + "<|eot_id|>";
  };
  if (t.system) turn("system", t.system->content);
  for (const Message* m : t.rest) turn(m->role, m->content);
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Llama-3.1-8B-Instruct (tokenizer_config.json): the system block is always written, with
// the knowledge cut-off and the date ("26 Jul 2024" unless the caller passes date_string;
// we never do), then the system message trimmed (empty when none).
std::string render_llama31(const Turns& t, bool gen) {
  std::string out =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
      "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
  out += (t.system ? trim(t.system->content) : std::string()) + "<|eot_id|>";
  for (const Message* m : t.rest)
    out += "<|start_header_id|>" + m->role + "<|end_header_id|>\n\n" + trim(m->content) + "<|eot_id|>";
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Qwen2.5-*-Instruct (tokenizer_config.json, the branch without tools): a system turn is
// always written, Qwen's default system prompt when the conversation has none; contents
// are not trimmed; no BOS.
std::string render_chatml(const Turns& t, bool gen) {
  std::string out = "<|im_start|>system\n";
  out += t.system ? t.system->content
                  : std::string("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  out += "<|im_end|>\n";
  for (const Message* m : t.rest) out += "<|im_start|>" + m->role + "\n" + m->content + "<|im_end|>\n";
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

// Python's str.strip(chars) family for one character.
std::string_view lstrip_char(std::string_view s, char c) {
  while (!s.empty() && s.front() == c) s.remove_prefix(1);
  return s;
}
std::string_view rstrip_char(std::string_view s, char c) {
  while (!s.empty() && s.back() == c) s.remove_suffix(1);
  return s;
}

// Qwen3's split of an assistant message into reasoning and answer, when the content
// carries a "</think>": reasoning = content.split('</think>')[0].rstrip('\n')
// .split('<think>')[-1].lstrip('\n'); answer = content.split('</think>')[-1].lstrip('\n').
struct Qwen3Reply {
  std::string reasoning, content;
};
Qwen3Reply split_qwen3_reply(std::string_view content) {
  const std::string_view close = "</think>", open = "<think>";
  const size_t first = content.find(close);
  if (first == std::string_view::npos) return {"", std::string(content)};
  const size_t last = content.rfind(close);
  std::string_view before = rstrip_char(content.substr(0, first), '\n');
  const size_t o = before.rfind(open);
  if (o != std::string_view::npos) before = before.substr(o + open.size());
  return {std::string(lstrip_char(before, '\n')), std::string(lstrip_char(content.substr(last + close.size()), '\n'))};
}

// The last assistant turn after the final user query, as Qwen3's template writes it: the
// think block always (empty when there is no reasoning), then the answer.
std::string qwen3_final_reply(std::string_view content) {
  const Qwen3Reply r = split_qwen3_reply(content);
  return "<think>\n" + std::string(rstrip_char(lstrip_char(r.reasoning, '\n'), '\n')) + "\n</think>\n\n" +
         std::string(lstrip_char(r.content, '\n'));
}

// Qwen3-8B (tokenizer_config.json, the branch without tools; enable_thinking not passed):
// ChatML without a default system turn; contents are not trimmed. An assistant turn
// after the last user query (i.e. the conversation's final reply) is written as
// qwen3_final_reply; earlier ones lose their reasoning (the text up to "</think>"). A user
// message wrapped in <tool_response>...</tool_response> does not count as a query. The
// generation prompt is "<|im_start|>assistant\n": the model opens its think block itself.
std::string render_qwen3(const Turns& t, bool gen) {
  std::string out;
  if (t.system) out += "<|im_start|>system\n" + t.system->content + "<|im_end|>\n";
  auto is_query = [](const std::string& c) {
    const std::string a = "<tool_response>", b = "</tool_response>";
    return !(c.compare(0, a.size(), a) == 0 && c.size() >= b.size() && c.compare(c.size() - b.size(), b.size(), b) == 0);
  };
  size_t last_query = t.rest.size() - 1;
  for (size_t i = t.rest.size(); i-- > 0;)
    if (t.rest[i]->role == "user" && is_query(t.rest[i]->content)) {
      last_query = i;
      break;
    }
  for (size_t i = 0; i < t.rest.size(); ++i) {
    const Message* m = t.rest[i];
    if (m->role == "user") {
      out += "<|im_start|>user\n" + m->content + "<|im_end|>\n";
      continue;
    }
    const Qwen3Reply r = split_qwen3_reply(m->content);
    out += "<|im_start|>assistant\n";
    if (i > last_query && (i + 1 == t.rest.size() || !r.reasoning.empty())) out += qwen3_final_reply(m->content);
    else out += r.content;
    out += "<|im_end|>\n";
  }
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

// Llama-2-7b-chat-hf (tokenizer_config.json): each user turn is
// bos + "[INST] " + content.strip() + " [/INST]", the system message wrapped in <<SYS>>
// inside the first one; each assistant turn " " + content.strip() + " " + eos. The
// template has no generation prompt: the reply follows "[/INST]".
std::string render_llama2(const Turns& t, bool /*gen*/) {
  std::string out;
  for (size_t i = 0; i < t.rest.size(); ++i) {
    const Message* m = t.rest[i];
    if (m->role == "user") {
      std::string content = m->content;
      if (i == 0 && t.system) content = "<<SYS>>\n" + t.system->content + "\n<</SYS>>\n\n" + content;
      out += "<s>[INST] " + trim(content) + " [/INST]";
    } else {
      out += " " + trim(m->content) + " </s>";
    }
  }
  return out;
}

// Mistral-7B-Instruct-v0.3 (tokenizer_config.json; the "V3" format in mistralai's
// cookbook): bos once, "[INST] " + content + "[/INST]" per user turn, " " + content|trim +
// eos per assistant turn, the system message prepended (with "\n\n") to the last user
// message. The published template attaches it when that user message is also the last
// message, i.e. whenever a prompt is rendered for generation; for a conversation that ends
// with an assistant turn we keep it on the last user message (mistral_common's rule).
std::string render_mistral(const Turns& t, bool /*gen*/) {
  size_t last_user = 0;
  for (size_t i = 0; i < t.rest.size(); ++i)
    if (t.rest[i]->role == "user") last_user = i;
  std::string out = "<s>";
  for (size_t i = 0; i < t.rest.size(); ++i) {
    const Message* m = t.rest[i];
    if (m->role == "user") {
      if (i == last_user && t.system)
        out += "[INST] " + t.system->content + "\n\n" + m->content + "[/INST]";
      else
        out += "[INST] " + m->content + "[/INST]";
    } else {
      out += " " + trim(m->content) + "</s>";
    }
  }
  return out;
}

// gemma-2-9b-it (tokenizer_config.json): bos, then "<start_of_turn>" + role ("model" for
// the assistant) + "\n" + content|trim + "<end_of_turn>\n" per turn. Gemma 2's template
// rejects a system message; Gemma 3's (gemma-3-*-it) folds it into the first user turn
// as system + "\n\n" before the trimmed user content, which is what we do.
std::string render_gemma(const Turns& t, bool gen) {
  std::string out = "<bos>";
  for (size_t i = 0; i < t.rest.size(); ++i) {
    const Message* m = t.rest[i];
    out += "<start_of_turn>" + std::string(m->role == "assistant" ? "model" : m->role) + "\n";
    if (i == 0 && t.system) out += t.system->content + "\n\n";
    out += trim(m->content) + "<end_of_turn>\n";
  }
  if (gen) out += "<start_of_turn>model\n";
  return out;
}

// Phi-3-mini-4k-instruct / Phi-3.5-mini-instruct (tokenizer_config.json): "<|" + role +
// "|>\n" + content + "<|end|>\n" per turn (a system turn only when its content is not
// empty), contents untrimmed; "<|assistant|>\n" as the generation prompt, otherwise the
// eos token (Phi-3's "<|endoftext|>") after the last turn.
std::string render_phi3(const Turns& t, bool gen) {
  std::string out;
  if (t.system && !t.system->content.empty()) out += "<|system|>\n" + t.system->content + "<|end|>\n";
  for (const Message* m : t.rest) out += "<|" + m->role + "|>\n" + m->content + "<|end|>\n";
  out += gen ? "<|assistant|>\n" : "<|endoftext|>";
  return out;
}

// The probe format of PACT.md: "User: {x}\n\nAssistant: ". Multi-turn conversations and
// a system message extend it in the obvious way (our choice; no published template).
std::string render_plain(const Turns& t, bool gen) {
  std::string out;
  if (t.system) out += t.system->content + "\n\n";
  for (const Message* m : t.rest)
    out += (m->role == "user" ? "User: " : "Assistant: ") + m->content + "\n\n";
  if (gen) out += "Assistant: ";
  return out;
}

}  // namespace

ChatTemplate::ChatTemplate(Family family) : family_(family) {
  for (const Entry& e : kTemplates)
    if (e.family == family) name_ = e.name;
}

const std::vector<std::string>& ChatTemplate::names() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (const Entry& e : kTemplates) v.push_back(e.name);
    return v;
  }();
  return n;
}

ChatTemplate ChatTemplate::by_name(const std::string& name) {
  for (const Entry& e : kTemplates)
    if (name == e.name) return ChatTemplate(e.family);
  std::string valid;
  for (const Entry& e : kTemplates) valid += std::string(valid.empty() ? "" : ", ") + e.name;
  input_error("chat_template", "unknown chat template '" + name + "' (valid: auto, " + valid + ")");
}

std::string ChatTemplate::render(const std::vector<Message>& messages, bool add_generation_prompt) const {
  Turns t = split_turns(messages, name_);
  switch (family_) {
    case Family::kLlama3: return render_llama3(t, add_generation_prompt);
    case Family::kLlama31: return render_llama31(t, add_generation_prompt);
    case Family::kChatml: return render_chatml(t, add_generation_prompt);
    case Family::kLlama2: return render_llama2(t, add_generation_prompt);
    case Family::kMistral: return render_mistral(t, add_generation_prompt);
    case Family::kGemma: return render_gemma(t, add_generation_prompt);
    case Family::kQwen3: return render_qwen3(t, add_generation_prompt);
    case Family::kPhi3: return render_phi3(t, add_generation_prompt);
    case Family::kPlain: return render_plain(t, add_generation_prompt);
  }
  return {};
}

namespace {

// What each family writes before an assistant's answer, and after a turn.
struct TurnMarkers {
  const char* assistant_header;
  const char* end_of_turn;
};

TurnMarkers turn_markers(Family f) {
  switch (f) {
    case Family::kLlama3:
    case Family::kLlama31: return {"<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"};
    case Family::kChatml:
    case Family::kQwen3: return {"<|im_start|>assistant\n", "<|im_end|>"};
    case Family::kGemma: return {"<start_of_turn>model\n", "<end_of_turn>"};
    case Family::kPhi3: return {"<|assistant|>\n", "<|end|>"};
    case Family::kPlain: return {"Assistant: ", ""};
    case Family::kLlama2: return {"", " </s>"};
    case Family::kMistral: return {"", "</s>"};
  }
  return {"", ""};
}

}  // namespace

std::string ChatTemplate::assistant_header() const { return turn_markers(family_).assistant_header; }

std::string ChatTemplate::end_of_turn() const { return turn_markers(family_).end_of_turn; }

std::string ChatTemplate::response_prefix() const {
  return family_ == Family::kLlama2 || family_ == Family::kMistral ? " " : "";
}

std::string ChatTemplate::format_response(std::string_view content) const {
  switch (family_) {
    case Family::kChatml:
    case Family::kPhi3:
    case Family::kPlain: return std::string(content);
    case Family::kQwen3: return qwen3_final_reply(content);  // the trained reply is the final turn
    default: return trim(content);
  }
}

std::string ChatTemplate::reply_content(std::string_view generated) const {
  if (family_ == Family::kQwen3) return split_qwen3_reply(generated).content;
  return std::string(generated);
}

ChatTemplate detect_chat_template(const std::string& path_or_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool is_dir = fs::is_directory(path_or_dir, ec);
  const std::string config_path = is_dir ? (fs::path(path_or_dir) / "tokenizer_config.json").string() : path_or_dir;
  const std::string dir = is_dir ? path_or_dir : fs::path(path_or_dir).parent_path().string();

  // Newer checkpoints keep the template in chat_template.jinja beside the config.
  std::string tmpl, source;
  const std::string jinja_path = (fs::path(dir.empty() ? "." : dir) / "chat_template.jinja").string();
  if (path_exists(jinja_path)) {
    tmpl = read_file(jinja_path);
    source = jinja_path;
  } else if (path_exists(config_path)) {
    nlohmann::json cfg;
    try {
      cfg = nlohmann::json::parse(read_file(config_path));
    } catch (const nlohmann::json::exception& e) {
      input_error(config_path, std::string("invalid JSON: ") + e.what());
    }
    auto it = cfg.is_object() ? cfg.find("chat_template") : cfg.end();
    if (it != cfg.end() && it->is_string()) {
      tmpl = it->get<std::string>();
    } else if (it != cfg.end() && it->is_array()) {
      // The list form: [{"name": "default", "template": ...}, {"name": "tool_use", ...}].
      for (const auto& e : *it)
        if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
          tmpl = e["template"].get<std::string>();
    }
    source = config_path;
  }

  auto has = [&](const char* marker) { return tmpl.find(marker) != std::string::npos; };
  Family f;
  if (tmpl.empty()) {
    log::warn("{}: no chat_template; using the plain \"User: ...\\n\\nAssistant: \" format",
                 source.empty() ? config_path : source);
    return ChatTemplate(Family::kPlain);
  } else if (has("<|start_header_id|>")) {
    f = has("Cutting Knowledge Date") ? Family::kLlama31 : Family::kLlama3;
  } else if (has("<|im_start|>")) {
    f = has("<think>") ? Family::kQwen3 : Family::kChatml;
  } else if (has("<start_of_turn>")) {
    f = Family::kGemma;
  } else if (has("<|assistant|>") && has("<|end|>")) {
    f = Family::kPhi3;
  } else if (has("[INST]")) {
    f = has("<<SYS>>") ? Family::kLlama2 : Family::kMistral;
  } else {
    log::warn("{}: chat_template has no marker of a known family; using plain (set chat_template to override)",
                 source);
    return ChatTemplate(Family::kPlain);
  }
  ChatTemplate t(f);
  log::debug("{}: chat template {}", source, t.name());
  return t;
}

ChatTemplate resolve_chat_template(const std::string& name, const std::string& model_dir) {
  if (name.empty() || name == "auto") return detect_chat_template(model_dir);
  return ChatTemplate::by_name(name);
}

}  // namespace safetune::text
