// Chat templates: each family's exact text for a two-turn conversation, written out
// literally from the family's published Jinja template (tokenizer_config.json of the
// named Hugging Face model, rendered by apply_chat_template), and detection from
// tokenizer_config.json markers.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "safetune/core/error.h"
#include "safetune/text/chat_template.h"

using namespace safetune;
using text::ChatTemplate;
using text::Message;

namespace {

// system?, user, assistant, user, assistant. Whitespace around the second user turn and
// the second reply shows which templates trim message contents.
const Message kSystem{"system", "You are terse."};
const std::vector<Message> kTwoTurns = {
    {"user", "Hi there"}, {"assistant", "Hello!"}, {"user", "  What is 2+2?\n"}, {"assistant", " 4 "}};

std::vector<Message> with_system(std::vector<Message> m) {
  m.insert(m.begin(), kSystem);
  return m;
}
std::vector<Message> without_last(std::vector<Message> m) {
  m.pop_back();
  return m;
}

std::string render(const std::string& name, const std::vector<Message>& m, bool gen) {
  return ChatTemplate::by_name(name).render(m, gen);
}

}  // namespace

// meta-llama/Meta-Llama-3-8B-Instruct, tokenizer_config.json chat_template: bos_token,
// then '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + content|trim + '<|eot_id|>'
// per message; no system turn unless one is given.
TEST(ChatTemplate, Llama3) {
  EXPECT_EQ(render("llama3", with_system(kTwoTurns), false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>");
  EXPECT_EQ(render("llama3", without_last(kTwoTurns), true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// meta-llama/Llama-3.1-8B-Instruct, tokenizer_config.json: the system header is always
// written with "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
// (date_string's default), then the trimmed system message (empty when none).
TEST(ChatTemplate, Llama31) {
  EXPECT_EQ(render("llama3.1", kTwoTurns, false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>");
  EXPECT_EQ(render("llama3.1", with_system(without_last(kTwoTurns)), true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Qwen/Qwen2.5-7B-Instruct, tokenizer_config.json (no tools): "<|im_start|>system\n" +
// (the given system message or "You are Qwen, created by Alibaba Cloud. You are a
// helpful assistant.") + "<|im_end|>\n", then '<|im_start|>' + role + '\n' + content +
// '<|im_end|>\n' per message, untrimmed; no BOS.
TEST(ChatTemplate, Chatml) {
  EXPECT_EQ(render("chatml", with_system(kTwoTurns), false),
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            "<|im_start|>user\nHi there<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\n  What is 2+2?\n<|im_end|>\n"
            "<|im_start|>assistant\n 4 <|im_end|>\n");
  EXPECT_EQ(render("chatml", kTwoTurns, false),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi there<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\n  What is 2+2?\n<|im_end|>\n"
            "<|im_start|>assistant\n 4 <|im_end|>\n");
  EXPECT_EQ(render("chatml", {{"user", "Hi there"}}, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
}

// meta-llama/Llama-2-7b-chat-hf, tokenizer_config.json: bos_token + '[INST] ' +
// content.strip() + ' [/INST]' per user turn (<<SYS>> block inside the first), ' ' +
// content.strip() + ' ' + eos_token per reply; no generation prompt.
TEST(ChatTemplate, Llama2) {
  EXPECT_EQ(render("llama2", with_system(kTwoTurns), false),
            "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello! </s>"
            "<s>[INST] What is 2+2? [/INST] 4 </s>");
  EXPECT_EQ(render("llama2", without_last(kTwoTurns), true),
            "<s>[INST] Hi there [/INST] Hello! </s><s>[INST] What is 2+2? [/INST]");
}

// mistralai/Mistral-7B-Instruct-v0.3, tokenizer_config.json ("V3" in mistralai's
// cookbook: "<s>[INST] user message[/INST] assistant message</s>[INST] new user
// message[/INST]"): the system message goes before the last user message.
TEST(ChatTemplate, Mistral) {
  EXPECT_EQ(render("mistral", kTwoTurns, false),
            "<s>[INST] Hi there[/INST] Hello!</s>[INST]   What is 2+2?\n[/INST] 4</s>");
  EXPECT_EQ(render("mistral", with_system(without_last(kTwoTurns)), true),
            "<s>[INST] Hi there[/INST] Hello!</s>[INST] You are terse.\n\n  What is 2+2?\n[/INST]");
}

// google/gemma-2-9b-it, tokenizer_config.json: bos_token, then '<start_of_turn>' + role
// ('model' for the assistant) + '\n' + content|trim + '<end_of_turn>\n'. A system message
// is folded into the first user turn as google/gemma-3-*-it's template does
// (system + '\n\n' before the trimmed user content).
TEST(ChatTemplate, Gemma) {
  EXPECT_EQ(render("gemma", kTwoTurns, false),
            "<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
            "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n");
  EXPECT_EQ(render("gemma", with_system(without_last(kTwoTurns)), true),
            "<bos><start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n"
            "<start_of_turn>model\nHello!<end_of_turn>\n"
            "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n");
}

// microsoft/Phi-3-mini-4k-instruct (and Phi-3.5-mini-instruct), tokenizer_config.json
// chat_template, rendered with jinja2 (eos_token "<|endoftext|>"): role headers, untrimmed
// contents, "<|end|>\n" after each turn, the eos token after a finished conversation.
TEST(ChatTemplate, Phi3) {
  EXPECT_EQ(render("phi3", kTwoTurns, false),
            "<|user|>\nHi there<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\n  What is 2+2?\n<|end|>\n"
            "<|assistant|>\n 4 <|end|>\n<|endoftext|>");
  EXPECT_EQ(render("phi3", with_system(without_last(kTwoTurns)), true),
            "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\nHello!<|end|>\n"
            "<|user|>\n  What is 2+2?\n<|end|>\n<|assistant|>\n");
  // An empty system message is not written.
  EXPECT_EQ(render("phi3", {{"system", ""}, {"user", "Hi"}}, true), "<|user|>\nHi<|end|>\n<|assistant|>\n");
}

// Qwen/Qwen3-8B, tokenizer_config.json chat_template (the branch without tools,
// enable_thinking not passed): ChatML with no default system turn and untrimmed contents.
// The reply after the last user query gets '<think>\n' + reasoning + '\n</think>\n\n'
// before its content, an empty think block when the content has none; earlier replies are
// written as their content after '</think>' (reasoning dropped). The generation prompt is
// '<|im_start|>assistant\n'.
TEST(ChatTemplate, Qwen3) {
  EXPECT_EQ(render("qwen3", kTwoTurns, false),
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\n  What is 2+2?\n<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\n 4 <|im_end|>\n");
  EXPECT_EQ(render("qwen3", with_system(without_last(kTwoTurns)), true),
            "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n  What is 2+2?\n<|im_end|>\n"
            "<|im_start|>assistant\n");
  // Reasoning in the contents: dropped from the earlier reply, kept (newlines trimmed) in
  // the last one.
  const std::vector<Message> thinking = {{"user", "Hi there"},
                                         {"assistant", "<think>\nGreet back.\n</think>\n\nHello!"},
                                         {"user", "What is 2+2?"},
                                         {"assistant", "<think>\n\nAdd them.\n\n</think>\n\n\n4"}};
  EXPECT_EQ(render("qwen3", thinking, false),
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n<think>\nAdd them.\n</think>\n\n4<|im_end|>\n");
  EXPECT_EQ(ChatTemplate::by_name("qwen3").format_response("4"), "<think>\n\n</think>\n\n4");
  // A generated reply read back as the template reads one: the answer after the think block.
  EXPECT_EQ(ChatTemplate::by_name("qwen3").reply_content("<think>\nThey want a sum.\n</think>\n\n4"), "4");
  EXPECT_EQ(ChatTemplate::by_name("qwen3").reply_content("I can't help with that."), "I can't help with that.");
  EXPECT_EQ(ChatTemplate::by_name("chatml").reply_content("<think>x</think>4"), "<think>x</think>4");
}

// PACT.md's probe format: "User: {x}\n\nAssistant: ".
TEST(ChatTemplate, Plain) {
  EXPECT_EQ(render("plain", {{"user", "How do I pick a lock?"}}, true),
            "User: How do I pick a lock?\n\nAssistant: ");
}

// The generation prompt is exactly the full conversation's text up to the reply: the
// prompt + assistant_header + response prefix + reply + end_of_turn is a prefix of the
// whole render, for every family (this is what makes the label boundary exact).
// What each family writes before an answer (after the generation prompt), before the
// response text, and after a turn.
TEST(ChatTemplate, TurnMarkers) {
  struct Want {
    const char* name;
    const char* assistant_header;
    const char* response_prefix;
    const char* end_of_turn;
  };
  for (const Want& w : std::vector<Want>{
           {"llama3", "<|start_header_id|>assistant<|end_header_id|>\n\n", "", "<|eot_id|>"},
           {"llama3.1", "<|start_header_id|>assistant<|end_header_id|>\n\n", "", "<|eot_id|>"},
           {"chatml", "<|im_start|>assistant\n", "", "<|im_end|>"},
           {"llama2", "", " ", " </s>"},
           {"mistral", "", " ", "</s>"},
           {"gemma", "<start_of_turn>model\n", "", "<end_of_turn>"},
           {"qwen3", "<|im_start|>assistant\n", "", "<|im_end|>"},
           {"plain", "Assistant: ", "", ""}}) {
    const ChatTemplate t = ChatTemplate::by_name(w.name);
    EXPECT_EQ(t.assistant_header(), w.assistant_header) << w.name;
    EXPECT_EQ(t.response_prefix(), w.response_prefix) << w.name;
    EXPECT_EQ(t.end_of_turn(), w.end_of_turn) << w.name;
  }
}

TEST(ChatTemplate, PromptIsPrefixOfConversation) {
  for (const std::string& name : ChatTemplate::names()) {
    auto t = ChatTemplate::by_name(name);
    std::string full = t.render(kTwoTurns, false);
    std::string prompt = t.render(without_last(kTwoTurns), true);
    std::string turn = prompt + t.response_prefix() + t.format_response(kTwoTurns.back().content) + t.end_of_turn();
    EXPECT_EQ(full.substr(0, turn.size()), turn) << name;
    EXPECT_TRUE(prompt.size() >= t.assistant_header().size() &&
                prompt.compare(prompt.size() - t.assistant_header().size(), std::string::npos,
                               t.assistant_header()) == 0)
        << name;
  }
}

TEST(ChatTemplate, BadInput) {
  try {
    ChatTemplate::by_name("vicuna");
    FAIL() << "no error";
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("vicuna"), std::string::npos) << msg;
    for (const char* n : {"llama2", "llama3", "chatml", "mistral", "gemma", "qwen3", "plain"})
      EXPECT_NE(msg.find(n), std::string::npos) << msg;
  }
  auto t = ChatTemplate::by_name("llama3");
  EXPECT_THROW(t.render({}, true), InputError);
  EXPECT_THROW(t.render({{"assistant", "hi"}}, true), InputError);
  EXPECT_THROW(t.render({{"user", "a"}, {"user", "b"}}, true), InputError);
  EXPECT_THROW(t.render({{"user", "a"}, {"system", "b"}}, true), InputError);
  EXPECT_THROW(t.render({{"system", "only"}}, true), InputError);
}

namespace {
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("safetune_ct_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
    return (path / name).string();
  }
};

std::string detect_from(const std::string& chat_template_json_value) {
  TempDir d;
  d.write("tokenizer_config.json", "{\"bos_token\": \"<s>\", \"chat_template\": " + chat_template_json_value + "}");
  return text::detect_chat_template(d.path.string()).name();
}
}  // namespace

// Snippets of each family's published chat_template, enough to carry its markers.
TEST(ChatTemplate, Detect) {
  EXPECT_EQ(detect_from(R"("{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}{% endfor %}")"),
            "llama3");
  EXPECT_EQ(detect_from(R"("{{- bos_token }}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting Knowledge Date: December 2023\\n\" }}")"),
            "llama3.1");
  EXPECT_EQ(detect_from(R"("{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- endif %}")"),
            "chatml");
  EXPECT_EQ(detect_from(R"("{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\n' }}{% endfor %}")"),
            "gemma");
  EXPECT_EQ(detect_from(R"("{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' }}")"),
            "qwen3");
  EXPECT_EQ(detect_from(R"("{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}")"),
            "llama2");
  EXPECT_EQ(detect_from(R"("{{- bos_token }}{%- for message in loop_messages %}{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}{%- endfor %}")"),
            "mistral");
  EXPECT_EQ(detect_from(R"("{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}")"),
            "phi3");
  // The list form of chat_template: the "default" entry is used.
  EXPECT_EQ(detect_from(R"([{"name": "tool_use", "template": "[INST]"}, {"name": "default", "template": "<|im_start|>"}])"),
            "chatml");
  // No chat_template (a base model): plain.
  {
    TempDir d;
    d.write("tokenizer_config.json", R"({"bos_token": "<s>"})");
    EXPECT_EQ(text::detect_chat_template(d.path.string()).name(), "plain");
    EXPECT_EQ(text::detect_chat_template((d.path / "tokenizer_config.json").string()).name(), "plain");
  }
  // chat_template.jinja beside the config wins.
  {
    TempDir d;
    d.write("tokenizer_config.json", R"({"bos_token": "<s>"})");
    d.write("chat_template.jinja", "{{ '<start_of_turn>user\n' }}");
    EXPECT_EQ(text::detect_chat_template(d.path.string()).name(), "gemma");
  }
  // Override by name; "auto" detects.
  {
    TempDir d;
    d.write("tokenizer_config.json", R"({"chat_template": "<|im_start|>"})");
    EXPECT_EQ(text::resolve_chat_template("llama3", d.path.string()).name(), "llama3");
    EXPECT_EQ(text::resolve_chat_template("auto", d.path.string()).name(), "chatml");
    EXPECT_THROW(text::resolve_chat_template("nope", d.path.string()), InputError);
  }
  // Malformed config: InputError naming the file.
  {
    TempDir d;
    std::string p = d.write("tokenizer_config.json", "{\"chat_template\": ");
    try {
      text::detect_chat_template(d.path.string());
      FAIL() << "no error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
}

// The published tokenizer_config.json files ($SAFETUNE_TOKENIZERS_DIR, else
// ../shared/data/tokenizers next to the sources; one folder per family).
TEST(ChatTemplate, DetectPublishedConfigs) {
  const char* env = std::getenv("SAFETUNE_TOKENIZERS_DIR");
  const std::string base = (env && *env ? std::string(env) : std::string(SAFETUNE_SOURCE_DIR) + "/../shared/data/tokenizers") + "/";
  for (const char* family : {"llama3", "qwen3", "gemma3", "gpt2"})
    if (!std::filesystem::exists(base + family + "/tokenizer_config.json"))
      GTEST_SKIP() << "***** the published tokenizer files are absent: no " << base << family
                   << "/tokenizer_config.json (set SAFETUNE_TOKENIZERS_DIR) *****";
  EXPECT_EQ(text::detect_chat_template(base + "llama3").name(), "llama3");
  EXPECT_EQ(text::detect_chat_template(base + "qwen3/tokenizer_config.json").name(), "qwen3");
  EXPECT_EQ(text::detect_chat_template(base + "gemma3").name(), "gemma");
  EXPECT_EQ(text::detect_chat_template(base + "gpt2").name(), "plain");
}
