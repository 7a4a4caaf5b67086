// Records -> examples -> batches: masking, truncation, padding and shuffling, checked
// against expectations computed by hand with a byte-level fake tokenizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include <torch/torch.h>

#include "safetune/core/error.h"
#include "safetune/data/batch.h"

using namespace safetune;
using data::kIgnoreIndex;

namespace {

// One id per byte (0..255), then the special tokens listed, matched before bytes.
class ByteTokenizer : public text::Tokenizer {
 public:
  explicit ByteTokenizer(std::vector<std::string> specials, std::string kind = "bpe")
      : specials_(std::move(specials)), kind_(std::move(kind)) {}
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> ids;
    if (add_bos && bos_id) ids.push_back(*bos_id);
    // SentencePiece-style tokenizers mark the start of the text as a word start.
    if (kind_ != "bpe" && !text.empty()) ids.push_back(' ');
    size_t i = 0;
    while (i < text.size()) {
      bool matched = false;
      for (size_t s = 0; s < specials_.size(); ++s)
        if (text.compare(i, specials_[s].size(), specials_[s]) == 0) {
          ids.push_back(256 + s);
          i += specials_[s].size();
          matched = true;
          break;
        }
      if (!matched) ids.push_back(static_cast<unsigned char>(text[i++]));
    }
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids, bool) const override {
    std::string s;
    for (int32_t id : ids) s += id_to_piece(id);
    return s;
  }
  std::string id_to_piece(int32_t id) const override {
    return id < 256 ? std::string(1, static_cast<char>(id)) : specials_.at(id - 256);
  }
  std::optional<int32_t> piece_to_id(std::string_view p) const override {
    for (size_t s = 0; s < specials_.size(); ++s)
      if (specials_[s] == p) return 256 + s;
    if (p.size() == 1) return static_cast<unsigned char>(p[0]);
    return std::nullopt;
  }
  int64_t vocab_size() const override { return 256 + specials_.size(); }
  bool is_special(int32_t id) const override { return id >= 256; }
  std::string kind() const override { return kind_; }

 private:
  std::vector<std::string> specials_;
  std::string kind_;
};

std::vector<int32_t> bytes(const std::string& s) { return std::vector<int32_t>(s.begin(), s.end()); }
std::vector<int32_t> cat(std::vector<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
std::vector<int32_t> repeat(int32_t v, size_t n) { return std::vector<int32_t>(n, v); }

data::Record rec(std::string prompt, std::string response, std::string where = "d.jsonl:1") {
  data::Record r;
  r.prompt = {{"user", std::move(prompt)}};
  r.response = std::move(response);
  r.where = std::move(where);
  return r;
}

std::vector<int64_t> to_vec(const at::Tensor& t) {
  auto c = t.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}
std::vector<int64_t> widen(const std::vector<int32_t>& v) { return std::vector<int64_t>(v.begin(), v.end()); }

}  // namespace

// plain: BOS + "User: hi\n\nAssistant: " | "ok" + EOS (no end-of-turn text in plain).
TEST(Batch, PlainExample) {
  ByteTokenizer tok({"<s>", "</s>"});
  tok.bos_id = 256;
  tok.eos_id = 257;
  auto ex = data::tokenize_example(rec("hi", "ok"), tok, text::ChatTemplate::by_name("plain"), 64);
  const auto prompt = cat({{256}, bytes("User: hi\n\nAssistant: ")});
  EXPECT_EQ(ex.input_ids, cat({prompt, bytes("ok"), {257}}));
  EXPECT_EQ(ex.labels, cat({repeat(kIgnoreIndex, prompt.size()), bytes("ok"), {257}}));
  EXPECT_EQ(ex.response_start, 22);  // 1 BOS + 21 bytes
  EXPECT_EQ(ex.post_ids, cat({{256}, bytes("Assistant: "), bytes("ok"), {257}}));
  EXPECT_EQ(ex.post_response_start, 12);
  EXPECT_EQ(ex.truncated, 0);
}

// chatml: the default system turn, the user turn, the header | reply + <|im_end|>.
TEST(Batch, ChatmlExample) {
  ByteTokenizer tok({"<|im_start|>", "<|im_end|>", "<|endoftext|>"});
  tok.eos_id = 257;
  tok.pad_id = 258;
  auto ex = data::tokenize_example(rec("hi", "ok"), tok, text::ChatTemplate::by_name("chatml"), 512);
  const auto prompt = cat({{256}, bytes("system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
                           {257}, bytes("\n"), {256}, bytes("user\nhi"), {257}, bytes("\n"), {256},
                           bytes("assistant\n")});
  EXPECT_EQ(ex.input_ids, cat({prompt, bytes("ok"), {257}}));
  EXPECT_EQ(ex.labels, cat({repeat(kIgnoreIndex, prompt.size()), bytes("ok"), {257}}));
  EXPECT_EQ(ex.response_start, static_cast<int64_t>(prompt.size()));
  EXPECT_EQ(ex.post_ids, cat({{256}, bytes("assistant\n"), bytes("ok"), {257}}));  // no BOS in Qwen
  EXPECT_EQ(ex.post_response_start, 11);
  EXPECT_EQ(data::pad_id_for(tok), 258);
}

// llama2 with a SentencePiece-style tokenizer: the space the template writes after
// "[/INST]" is the tokenizer's word-start mark; a byte-level tokenizer gets it written.
TEST(Batch, Llama2ResponseSpace) {
  auto tmpl = text::ChatTemplate::by_name("llama2");
  ByteTokenizer spm({"<s>", "</s>"}, "sentencepiece");
  spm.bos_id = 256;
  spm.eos_id = 257;
  auto ex = data::tokenize_example(rec("hi", " ok "), spm, tmpl, 64);
  // encode() of the prompt starts with the word-start mark as well (the fake adds ' ').
  const auto prompt = cat({{' ', 256}, bytes("[INST] hi [/INST]")});
  EXPECT_EQ(ex.input_ids, cat({prompt, bytes(" ok "), {257}}));
  EXPECT_EQ(ex.response_start, static_cast<int64_t>(prompt.size()));

  ByteTokenizer bpe({"<s>", "</s>"});
  bpe.bos_id = 256;
  auto ex2 = data::tokenize_example(rec("hi", " ok "), bpe, tmpl, 64);
  EXPECT_EQ(ex2.input_ids, cat({{256}, bytes("[INST] hi [/INST]"), bytes(" ok "), {257}}));
}

TEST(Batch, TruncationAndTooLongPrompt) {
  ByteTokenizer tok({"<s>", "</s>"});
  tok.bos_id = 256;
  tok.eos_id = 257;
  auto tmpl = text::ChatTemplate::by_name("plain");
  // Prompt is 22 tokens; 24 leaves room for "ok", cutting the EOS.
  auto ex = data::tokenize_example(rec("hi", "ok"), tok, tmpl, 24);
  EXPECT_EQ(ex.input_ids.size(), 24u);
  EXPECT_EQ(ex.truncated, 1);
  EXPECT_EQ(ex.labels.back(), 'k');
  EXPECT_EQ(ex.post_ids.size(), 12u + 2u);

  // One response token of room is enough; none is an error naming file:line.
  EXPECT_EQ(data::tokenize_example(rec("hi", "ok"), tok, tmpl, 23).truncated, 2);
  try {
    data::tokenize_example(rec("hi", "ok", "train.jsonl:7"), tok, tmpl, 22);
    FAIL() << "no error";
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind("train.jsonl:7: ", 0), 0u) << msg;
    EXPECT_NE(msg.find("prompt is 22 tokens"), std::string::npos) << msg;
  }

  // tokenize_records aggregates (and keeps record order in Example::index).
  std::vector<data::Record> recs = {rec("hi", "ok"), rec("hi", "a much longer answer"), rec("hi", "x")};
  auto exs = data::tokenize_records(recs, tok, tmpl, 25);
  ASSERT_EQ(exs.size(), 3u);
  EXPECT_EQ(exs[0].truncated, 0);
  EXPECT_EQ(exs[1].truncated, 21 - 3);
  EXPECT_EQ(exs[2].index, 2);

  // Conversation errors from the template carry the record's location too.
  data::Record bad = rec("hi", "ok", "chat.jsonl:3");
  bad.prompt.push_back({"user", "again"});
  try {
    data::tokenize_example(bad, tok, text::ChatTemplate::by_name("chatml"), 64);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("chat.jsonl:3: ", 0), 0u) << e.what();
  }
}

// Two rows of different lengths, right padded with the pad id.
TEST(Batch, CollatePadsAndMasks) {
  ByteTokenizer tok({"<s>", "</s>"});
  tok.bos_id = 256;
  tok.eos_id = 257;  // no pad: EOS pads
  auto tmpl = text::ChatTemplate::by_name("plain");
  std::vector<data::Record> recs = {rec("hi", "ok"), rec("hello", "a")};
  auto exs = data::tokenize_records(recs, tok, tmpl, 64);
  const int32_t pad = data::pad_id_for(tok);
  ASSERT_EQ(pad, 257);
  auto b = data::collate({&exs[0], &exs[1]}, pad);

  // Row 0: 22 prompt + "ok" + EOS = 25; row 1: 25 prompt + "a" + EOS = 27.
  const auto row0 = cat({{256}, bytes("User: hi\n\nAssistant: ok"), {257}});
  const auto row1 = cat({{256}, bytes("User: hello\n\nAssistant: a"), {257}});
  ASSERT_EQ(row0.size(), 25u);
  ASSERT_EQ(row1.size(), 27u);
  EXPECT_EQ(b.input_ids.sizes(), (std::vector<int64_t>{2, 27}));
  EXPECT_EQ(b.input_ids.scalar_type(), torch::kInt64);
  EXPECT_EQ(to_vec(b.input_ids[0]), widen(cat({row0, {257, 257}})));
  EXPECT_EQ(to_vec(b.input_ids[1]), widen(row1));
  EXPECT_EQ(to_vec(b.attention_mask[0]), widen(cat({repeat(1, 25), repeat(0, 2)})));
  EXPECT_EQ(to_vec(b.attention_mask[1]), widen(repeat(1, 27)));
  EXPECT_EQ(to_vec(b.labels[0]), widen(cat({repeat(kIgnoreIndex, 22), bytes("ok"), {257}, repeat(kIgnoreIndex, 2)})));
  EXPECT_EQ(to_vec(b.labels[1]), widen(cat({repeat(kIgnoreIndex, 25), bytes("a"), {257}})));
  EXPECT_EQ(to_vec(b.response_start), (std::vector<int64_t>{22, 25}));
  EXPECT_EQ(to_vec(b.lengths), (std::vector<int64_t>{25, 27}));
  // Post-only: BOS + "Assistant: " + response; 15 and 14 tokens.
  EXPECT_EQ(b.post_ids.sizes(), (std::vector<int64_t>{2, 15}));
  EXPECT_EQ(to_vec(b.post_ids[1]), widen(cat({{256}, bytes("Assistant: a"), {257}, {257}})));
  EXPECT_EQ(to_vec(b.post_attention_mask[1]), widen(cat({repeat(1, 14), {0}})));
  EXPECT_EQ(to_vec(b.post_response_start), (std::vector<int64_t>{12, 12}));
  EXPECT_EQ(b.indices, (std::vector<int64_t>{0, 1}));
}

TEST(Batch, ShuffleDeterministicPermutation) {
  for (int64_t n : {1, 2, 7, 100, 1000}) {
    auto a = data::epoch_order(n, 42, 0);
    EXPECT_EQ(a, data::epoch_order(n, 42, 0));
    auto sorted = a;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, data::epoch_order(n, 42, 0, /*shuffle=*/false)) << n;
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(sorted[i], i);
  }
  EXPECT_NE(data::epoch_order(100, 42, 0), data::epoch_order(100, 42, 1));
  EXPECT_NE(data::epoch_order(100, 42, 0), data::epoch_order(100, 43, 0));
  EXPECT_NE(data::epoch_order(100, 42, 0), data::epoch_order(100, 42, 0, false));
  // Torch's global generator plays no part.
  torch::manual_seed(1);
  auto x = data::epoch_order(50, 7, 3);
  torch::manual_seed(2);
  EXPECT_EQ(x, data::epoch_order(50, 7, 3));

  // Every position is reached by every element over many seeds (a shuffle, not a rotation).
  std::vector<std::set<int64_t>> seen(5);
  for (uint64_t s = 0; s < 200; ++s) {
    auto o = data::epoch_order(5, s, 0);
    for (int64_t i = 0; i < 5; ++i) seen[i].insert(o[i]);
  }
  for (auto& s : seen) EXPECT_EQ(s.size(), 5u);
}

TEST(Batch, BatcherEpochsAndResume) {
  ByteTokenizer tok({"<s>", "</s>"});
  tok.eos_id = 257;
  std::vector<data::Record> recs;
  for (int i = 0; i < 10; ++i) recs.push_back(rec("q" + std::to_string(i), std::string(i + 1, 'a')));
  auto exs = data::tokenize_records(recs, tok, text::ChatTemplate::by_name("plain"), 64);

  data::Batcher batcher(exs, 4, 42, true, false, 0);
  EXPECT_EQ(batcher.steps_per_epoch(), 3);
  EXPECT_EQ(data::Batcher(exs, 4, 42, true, true, 0).steps_per_epoch(), 2);

  // One epoch covers every example once, in epoch_order.
  std::vector<int64_t> all;
  for (int64_t s = 0; s < 3; ++s) {
    auto idx = batcher.batch_indices(1, s);
    all.insert(all.end(), idx.begin(), idx.end());
  }
  EXPECT_EQ(all, data::epoch_order(10, 42, 1));
  EXPECT_EQ(batcher.batch_indices(1, 2).size(), 2u);

  // A fresh batcher resumed at (epoch 1, step 2) yields the same batch.
  data::Batcher resumed(exs, 4, 42, true, false, 0);
  auto b1 = batcher.batch(1, 2);
  auto b2 = resumed.batch(1, 2);
  EXPECT_EQ(b1.indices, b2.indices);
  EXPECT_TRUE(torch::equal(b1.input_ids, b2.input_ids));
  EXPECT_TRUE(torch::equal(b1.labels, b2.labels));
  // Rows are the examples named by indices.
  for (size_t r = 0; r < b1.indices.size(); ++r)
    EXPECT_EQ(to_vec(b1.response_start)[r], exs[b1.indices[r]].response_start);

  EXPECT_THROW(batcher.batch(0, 3), std::out_of_range);
  EXPECT_THROW(data::Batcher(exs, 0, 1), InputError);
}
