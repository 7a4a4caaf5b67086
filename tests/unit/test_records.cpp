// Dataset records: the three shapes, JSON array vs JSONL, and errors naming file:line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "safetune/core/error.h"
#include "safetune/data/records.h"
#include "test_util.h"

using namespace safetune;

namespace {

const test_util::ScratchDir scratch("safetune_records");

std::string write_temp(const std::string& name, const std::string& text) { return scratch.write(name, text); }

// The InputError message for reading `text` from a file called `name`.
std::string error_of(const std::string& name, const std::string& text) {
  const std::string path = write_temp(name, text);
  return test_util::input_error_of([&] { data::read_records(path); });
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

TEST(Records, ShapesFromJsonl) {
  std::string path = write_temp("shapes.jsonl",
                                "{\"instruction\": \"Classify the sentiment.\", \"input\": \"great film\", "
                                "\"output\": \"positive\", \"label\": 1}\n"
                                "\n"
                                "{\"instruction\": \"Say hi.\", \"input\": \"\", \"output\": \"hi\"}\n"
                                "{\"input\": \"How do I pick a lock?\", \"output\": \"I can't help with that.\"}\n"
                                "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", "
                                "\"content\": \"u1\"}, {\"role\": \"assistant\", \"content\": \"a1\"}, {\"role\": "
                                "\"user\", \"content\": \"u2\"}, {\"role\": \"assistant\", \"content\": \"a2\"}], "
                                "\"id\": \"x\"}\n"
                                "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n");
  auto recs = data::read_records(path);
  ASSERT_EQ(recs.size(), 5u);

  ASSERT_EQ(recs[0].prompt.size(), 1u);
  EXPECT_EQ(recs[0].prompt[0].role, "user");
  EXPECT_EQ(recs[0].prompt[0].content, "Classify the sentiment.\n\ngreat film");
  EXPECT_EQ(recs[0].response, "positive");
  EXPECT_EQ(recs[0].extra, nlohmann::json({{"label", 1}}));
  EXPECT_EQ(recs[0].where, path + ":1");

  EXPECT_EQ(recs[1].prompt[0].content, "Say hi.");  // empty input: no separator
  EXPECT_EQ(recs[1].where, path + ":3");             // blank line 2 skipped, lines still counted
  EXPECT_EQ(recs[2].prompt[0].content, "How do I pick a lock?");
  EXPECT_EQ(recs[2].response, "I can't help with that.");

  ASSERT_EQ(recs[3].prompt.size(), 4u);
  EXPECT_EQ(recs[3].prompt[0].role, "system");
  EXPECT_EQ(recs[3].prompt[3].role, "user");
  EXPECT_EQ(recs[3].prompt[3].content, "u2");
  EXPECT_EQ(recs[3].response, "a2");
  EXPECT_EQ(recs[3].extra, nlohmann::json({{"id", "x"}}));

  EXPECT_EQ(recs[4].prompt[0].content, "2+2=");
  EXPECT_EQ(recs[4].response, "4");
  EXPECT_TRUE(recs[4].extra.empty());
}

TEST(Records, JsonArray) {
  std::string path = write_temp("arr.json", "  [\n {\"instruction\": \"a\", \"output\": \"b\"},\n"
                                            " {\"prompt\": \"c\", \"completion\": \"d\", \"label\": \"harmful\"}\n]\n");
  auto recs = data::read_records(path);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].response, "b");
  EXPECT_EQ(recs[1].where, path + ":record 2");
  EXPECT_EQ(recs[1].extra["label"], "harmful");
}

TEST(Records, UnicodeKept) {
  auto recs = data::parse_records("{\"prompt\": \"caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80\", "
                                  "\"completion\": \"\\u00e9\"}\n",
                                  "u.jsonl");
  EXPECT_EQ(recs[0].prompt[0].content, "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80");
  EXPECT_EQ(recs[0].response, "\xC3\xA9");
}

TEST(Records, Errors) {
  const std::string ok = "{\"prompt\": \"p\", \"completion\": \"c\"}\n";
  std::string e;

  e = error_of("noout.jsonl", ok + "{\"instruction\": \"do it\", \"input\": \"x\"}\n");
  EXPECT_TRUE(starts_with(e, write_temp("noout.jsonl", "") + ":2: ")) << e;
  EXPECT_NE(e.find("no 'output'"), std::string::npos) << e;

  e = error_of("shape.jsonl", ok + ok + "{\"question\": \"q\", \"answer\": \"a\"}\n");
  EXPECT_NE(e.find("shape.jsonl:3: unknown record shape"), std::string::npos) << e;
  EXPECT_NE(e.find("question"), std::string::npos) << e;

  e = error_of("utf8.jsonl", ok + ok + "{\"prompt\": \"bad \xC3\x28\", \"completion\": \"c\"}\n");
  EXPECT_NE(e.find("utf8.jsonl:3: invalid UTF-8"), std::string::npos) << e;
  // Overlong encodings and UTF-16 surrogates are invalid too.
  EXPECT_NE(error_of("overlong.jsonl", "{\"prompt\": \"\xC0\xAF\", \"completion\": \"c\"}").find("overlong.jsonl:1: invalid UTF-8"),
            std::string::npos);
  EXPECT_NE(error_of("surr.jsonl", ok + "{\"prompt\": \"\xED\xA0\x80\", \"completion\": \"c\"}").find("surr.jsonl:2: invalid UTF-8"),
            std::string::npos);
  EXPECT_NE(error_of("trunc.jsonl", ok + "{\"prompt\": \"\xF0\x9F\x98").find("trunc.jsonl:2: invalid UTF-8"),
            std::string::npos);

  e = error_of("empty.jsonl", "");
  EXPECT_NE(e.find("empty.jsonl: empty dataset"), std::string::npos) << e;
  e = error_of("blank.jsonl", "\n  \n\n");
  EXPECT_NE(e.find("blank.jsonl: empty dataset"), std::string::npos) << e;
  e = error_of("emptyarr.json", "[]");
  EXPECT_NE(e.find("emptyarr.json: empty dataset"), std::string::npos) << e;

  e = error_of("broken.jsonl", ok + ok + ok + "{\"prompt\": \"p\", \"completion\": \n");
  EXPECT_NE(e.find("broken.jsonl:4: invalid JSON"), std::string::npos) << e;

  e = error_of("brokenarr.json", "[\n{\"prompt\": \"p\", \"completion\": \"c\"},\n{\"prompt\": }\n]");
  EXPECT_NE(e.find("brokenarr.json:3: invalid JSON"), std::string::npos) << e;

  e = error_of("arrnoout.json", "[{\"prompt\": \"p\", \"completion\": \"c\"}, {\"instruction\": \"i\"}]");
  EXPECT_NE(e.find("arrnoout.json:record 2: record has no 'output'"), std::string::npos) << e;

  e = error_of("msgs.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}]}");
  EXPECT_NE(e.find("msgs.jsonl:1: no output"), std::string::npos) << e;
  e = error_of("role.jsonl", "{\"messages\": [{\"role\": \"bot\", \"content\": \"u\"}]}");
  EXPECT_NE(e.find("role.jsonl:1: messages[0]: unknown role 'bot'"), std::string::npos) << e;
  e = error_of("alt.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": \"user\", "
                            "\"content\": \"v\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}");
  EXPECT_NE(e.find("alt.jsonl:1: messages[1]"), std::string::npos) << e;

  e = error_of("type.jsonl", "{\"prompt\": \"p\", \"completion\": 4}");
  EXPECT_NE(e.find("type.jsonl:1: field 'completion' must be a string"), std::string::npos) << e;
  e = error_of("notobj.jsonl", "[1, 2]\n");  // an array file of non-objects
  EXPECT_NE(e.find("notobj.jsonl:record 1: expected a JSON object"), std::string::npos) << e;

  EXPECT_THROW(data::read_records(write_temp("", "") + "/missing.jsonl"), InputError);
}
