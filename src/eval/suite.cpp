// Evaluation suite files: parse, validate every field, read every prompt set.
#include "safetune/eval/suite.h"

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/json_depth.h"
#include "safetune/eval/judge.h"
#include "safetune/eval/metrics.h"

namespace safetune::eval {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string str_field(const json& o, const char* key, const std::string& where) {
  const json& v = o.at(key);
  if (!v.is_string()) input_error(where + ": " + key, std::string("must be a string, got ") + v.type_name());
  return v.get<std::string>();
}

SetKind parse_kind(const std::string& s, const std::string& where) {
  if (s == "safety") return SetKind::kSafety;
  if (s == "exact_match") return SetKind::kExactMatch;
  if (s == "regex") return SetKind::kRegex;
  if (s == "final_number") return SetKind::kFinalNumber;
  input_error(where, "unknown kind '" + s + "' (expected safety, exact_match, regex or final_number)");
}

// The gold answer of a utility record: the named field (a string, or a number written
// as JSON writes it), else the record's response.
std::string label_of(const data::Record& r, const std::string& field) {
  if (field.empty()) {
    if (!r.has_response)
      input_error(r.where, "no label: the record has no output (or name a label field in the suite)");
    return r.response;
  }
  if (!r.extra.contains(field)) input_error(r.where, "no label field '" + field + "'");
  const json& v = r.extra[field];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  input_error(r.where, "label field '" + field + "' must be a string or a number, got " + v.type_name());
}

}  // namespace

const char* set_kind_name(SetKind k) {
  switch (k) {
    case SetKind::kSafety: return "safety";
    case SetKind::kExactMatch: return "exact_match";
    case SetKind::kRegex: return "regex";
    case SetKind::kFinalNumber: return "final_number";
  }
  return "?";
}

namespace {

// A positive integer field of a set; `dflt` when absent.
int64_t positive_int(const json& s, const char* key, const std::string& w, int64_t dflt) {
  if (!s.contains(key)) return dflt;
  const json& v = s[key];
  if (!v.is_number_integer() || v.get<int64_t>() < 1) input_error(w + ": " + key, "must be an integer >= 1");
  return v.get<int64_t>();
}

// The set's pattern: required for a regex set, refused for every other kind.
void read_regex(const json& s, const std::string& w, PromptSet& ps) {
  if (ps.kind != SetKind::kRegex) {
    if (s.contains("regex")) input_error(w + ": regex", "only a set of kind regex takes a pattern");
    return;
  }
  if (!s.contains("regex")) input_error(w, "a regex set needs \"regex\"");
  ps.regex_source = str_field(s, "regex", w);
  if (ps.regex_source.empty()) input_error(w + ": regex", "must not be empty");
  try {
    ps.regex = std::regex(ps.regex_source, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    input_error(w + ": regex", "invalid regular expression '" + ps.regex_source + "': " + e.what());
  }
}

// {"prompt": "goal"}, or the text form "prompt=goal" that --columns takes.
void read_columns(const json& s, const std::string& w, PromptSet& ps) {
  if (!s.contains("columns")) return;
  const json& c = s["columns"];
  const std::string cw = w + ": columns";
  if (c.is_string()) {
    ps.columns = data::parse_column_map(c.get<std::string>(), cw);
  } else if (c.is_object()) {
    for (auto it = c.begin(); it != c.end(); ++it) {
      if (!it.value().is_string()) input_error(cw, "column names must be strings ('" + it.key() + "')");
      ps.columns[it.key()] = it.value().get<std::string>();
    }
    data::check_column_map(ps.columns, cw);
  } else {
    input_error(cw, "expected {\"field\": \"column\", ...} or \"field=column,...\"");
  }
}

// One entry of "sets" (`w` names it), its records read from its path relative to `base`.
PromptSet read_set(const json& s, const std::string& w, const fs::path& base, std::set<std::string>& names) {
  if (!s.is_object()) input_error(w, "expected an object");
  static const std::set<std::string> known = {"name", "path", "kind", "label", "regex", "limit", "max_new_tokens",
                                              "columns"};
  for (auto it = s.begin(); it != s.end(); ++it)
    if (!known.count(it.key()))
      input_error(w, "unknown key '" + it.key() + "' (expected name, path, kind, label, regex, limit, max_new_tokens, columns)");
  for (const char* req : {"name", "path", "kind"})
    if (!s.contains(req)) input_error(w, std::string("missing \"") + req + "\"");
  PromptSet ps;
  ps.name = str_field(s, "name", w);
  if (ps.name.empty()) input_error(w + ": name", "must not be empty");
  if (!names.insert(ps.name).second) input_error(w + ": name", "duplicate set name '" + ps.name + "'");
  ps.kind = parse_kind(str_field(s, "kind", w), w + ": kind");
  const fs::path p = str_field(s, "path", w);
  if (p.empty()) input_error(w + ": path", "must not be empty");
  ps.path = (p.is_absolute() ? p : base / p).lexically_normal().string();
  if (s.contains("label")) {
    ps.label_field = str_field(s, "label", w);
    if (ps.label_field.empty()) input_error(w + ": label", "must not be empty");
    if (ps.kind == SetKind::kSafety) input_error(w + ": label", "a safety set has no labels");
  }
  read_regex(s, w, ps);
  ps.limit = positive_int(s, "limit", w, ps.limit);
  ps.max_new_tokens = positive_int(s, "max_new_tokens", w, ps.max_new_tokens);
  read_columns(s, w, ps);
  ps.records = data::read_prompt_records(ps.path, ps.columns);
  if (ps.limit > 0 && static_cast<int64_t>(ps.records.size()) > ps.limit) ps.records.resize(ps.limit);
  if (ps.kind != SetKind::kSafety)
    for (const auto& r : ps.records) {
      ps.labels.push_back(label_of(r, ps.label_field));
      if (ps.kind == SetKind::kFinalNumber && !final_number_of(ps.labels.back()))
        input_error(r.where, "the label '" + ps.labels.back() + "' has no number to compare with");
    }
  return ps;
}

}  // namespace

Suite load_suite(const std::string& path) {
  const std::string text = read_file(path);
  if (find_json_too_deep(text) != std::string_view::npos) input_error(path, "JSON nests too deep");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    input_error(path, std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object()) input_error(path, "expected a JSON object with a \"sets\" list");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "sets" && it.key() != "refusal_keywords")
      input_error(path, "unknown key '" + it.key() + "' (expected sets, refusal_keywords)");

  Suite suite;
  suite.path = path;
  suite.refusal_keywords = default_refusal_keywords();
  if (j.contains("refusal_keywords")) {
    const json& k = j["refusal_keywords"];
    const std::string w = path + ": refusal_keywords";
    if (!k.is_array() || k.empty()) input_error(w, "must be a non-empty list of strings");
    suite.refusal_keywords.clear();
    for (const json& s : k) {
      if (!s.is_string() || s.get<std::string>().empty()) input_error(w, "must be a list of non-empty strings");
      suite.refusal_keywords.push_back(s.get<std::string>());
    }
  }
  if (!j.contains("sets") || !j["sets"].is_array() || j["sets"].empty())
    input_error(path + ": sets", "the suite has no prompt sets (need a non-empty \"sets\" list)");
  const fs::path base = fs::path(path).parent_path();
  std::set<std::string> names;
  for (size_t i = 0; i < j["sets"].size(); ++i)
    suite.sets.push_back(read_set(j["sets"][i], path + ": sets[" + std::to_string(i) + "]", base, names));
  return suite;
}

}  // namespace safetune::eval
