// Records from JSON / JSONL / CSV / TSV, with errors that point at the offending line or record.
#include "safetune/data/records.h"

#include <algorithm>
#include <set>

#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/json_depth.h"
#include "safetune/data/csv.h"
#include "safetune/text/unicode.h"

namespace safetune::data {
namespace {

using nlohmann::json;

size_t line_of(std::string_view s, size_t offset) {
  size_t line = 1;
  for (size_t i = 0; i < offset && i < s.size(); ++i) line += s[i] == '\n';
  return line;
}

std::string get_string(const json& obj, const char* key, const std::string& where) {
  const json& v = obj.at(key);
  if (!v.is_string()) input_error(where, std::string("field '") + key + "' must be a string, got " + v.type_name());
  return v.get<std::string>();
}

Record to_record(const json& obj, const std::string& where, bool response_optional) {
  if (!obj.is_object()) input_error(where, std::string("expected a JSON object, got ") + obj.type_name());
  Record r;
  r.where = where;
  std::vector<std::string> used;

  if (obj.contains("messages")) {
    const json& msgs = obj["messages"];
    if (!msgs.is_array()) input_error(where, "field 'messages' must be an array");
    for (size_t i = 0; i < msgs.size(); ++i) {
      const json& m = msgs[i];
      const std::string mw = where + ": messages[" + std::to_string(i) + "]";
      if (!m.is_object() || !m.contains("role") || !m.contains("content"))
        input_error(mw, "each message needs 'role' and 'content'");
      text::Message msg{get_string(m, "role", mw), get_string(m, "content", mw)};
      if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
        input_error(mw, "unknown role '" + msg.role + "' (expected system, user or assistant)");
      if (msg.role == "system" && i != 0) input_error(mw, "a system message may only come first");
      r.prompt.push_back(std::move(msg));
    }
    if (response_optional && !r.prompt.empty() && r.prompt.back().role == "user") {
      r.has_response = false;  // a prompt to answer
    } else {
      if (r.prompt.empty() || r.prompt.back().role != "assistant")
        input_error(where, "no output: the last message must be the assistant response");
      r.response = r.prompt.back().content;
      r.prompt.pop_back();
    }
    // The prompt must be what chat templates accept: optional system, then user/assistant
    // alternating, ending with the user turn being answered.
    size_t k = !r.prompt.empty() && r.prompt[0].role == "system" ? 1 : 0;
    if (k == r.prompt.size()) input_error(where, "messages have no user turn before the response");
    for (size_t j = k; j < r.prompt.size(); ++j) {
      const char* want = (j - k) % 2 == 0 ? "user" : "assistant";
      if (r.prompt[j].role != want)
        input_error(where + ": messages[" + std::to_string(j) + "]",
                    "roles must alternate user/assistant after an optional system message");
    }
    if (r.prompt.back().role != "user")
      input_error(where + ": messages[" + std::to_string(r.prompt.size()) + "]",
                  "two assistant messages in a row: the response must answer a user turn");
    used = {"messages"};
  } else if (obj.contains("instruction") || obj.contains("input") || obj.contains("output")) {
    if (!obj.contains("output") && !response_optional) input_error(where, "record has no 'output'");
    if (!obj.contains("instruction") && !obj.contains("input"))
      input_error(where, "record has 'output' but neither 'instruction' nor 'input'");
    std::string instruction = obj.contains("instruction") ? get_string(obj, "instruction", where) : "";
    std::string input = obj.contains("input") && !obj["input"].is_null() ? get_string(obj, "input", where) : "";
    r.prompt.push_back({"user", alpaca_prompt(instruction, input)});
    if (obj.contains("output")) r.response = get_string(obj, "output", where);
    else r.has_response = false;
    used = {"instruction", "input", "output"};
  } else if (obj.contains("prompt") || obj.contains("completion")) {
    if (!obj.contains("completion") && !response_optional)
      input_error(where, "record has 'prompt' but no 'completion'");
    if (!obj.contains("prompt")) input_error(where, "record has 'completion' but no 'prompt'");
    r.prompt.push_back({"user", get_string(obj, "prompt", where)});
    if (obj.contains("completion")) r.response = get_string(obj, "completion", where);
    else r.has_response = false;
    used = {"prompt", "completion"};
  } else {
    std::string keys;
    for (auto it = obj.begin(); it != obj.end(); ++it) keys += (keys.empty() ? "" : ", ") + it.key();
    input_error(where, "unknown record shape (keys: " + (keys.empty() ? std::string("none") : keys) +
                           "); expected {instruction, input?, output}, {messages}, or {prompt, completion}");
  }
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (std::find(used.begin(), used.end(), it.key()) == used.end()) r.extra[it.key()] = it.value();
  return r;
}

// A JSON record with its mapped keys renamed to their fields; its other keys go to `rest`
// (the record's extra fields, added after the shape is read so that they cannot change it).
json remap(const json& obj, const ColumnMap& columns, const std::string& where, json& rest) {
  rest = json::object();
  if (!obj.is_object()) return obj;  // to_record names the problem
  json out = json::object();
  std::set<std::string> keys;
  for (const auto& [field, key] : columns) {
    if (!obj.contains(key)) input_error(where, "no key '" + key + "' (the column mapping reads field " + field + " from it)");
    out[field] = obj[key];
    keys.insert(key);
  }
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (!keys.count(it.key())) rest[it.key()] = it.value();
  return out;
}

Record mapped_record(const json& obj, const ColumnMap& columns, const std::string& where, bool response_optional) {
  if (columns.empty()) return to_record(obj, where, response_optional);
  json rest;
  const json fields = remap(obj, columns, where, rest);
  Record r = to_record(fields, where, response_optional);
  for (auto it = rest.begin(); it != rest.end(); ++it) r.extra[it.key()] = it.value();
  return r;
}

std::string list_text(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names)
    if (!n.empty()) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "none" : s;
}

// The fields a CSV file gives every row (its named columns, or the mapped ones) must make
// one record shape: checked once at the header, so that a missing column is one message
// naming it rather than one per row.
void check_csv_shape(const std::set<std::string>& f, const std::string& where, const std::vector<std::string>& header,
                     bool response_optional) {
  auto has = [&](const char* k) { return f.count(k) > 0; };
  const bool alpaca = has("instruction") || has("input") || has("output");
  const bool chat = has("prompt") || has("completion");
  // "<field>; name a header column <field>, or map one (field=column, e.g. <field>=<column>)"
  auto how = [](const std::string& field, const std::string& example) {
    return "; name a header column " + field + ", or map one (field=column, e.g. " + field + "=" + example + ")";
  };
  if (has("messages")) input_error(where, "a CSV cell cannot hold a messages list; use instruction/input/output or prompt/completion columns");
  if (alpaca && chat)
    input_error(where, "the columns mix {instruction, input, output} with {prompt, completion}; use one shape");
  if (!alpaca && !chat)
    input_error(where, "no column is a record field (columns: " + list_text(header) +
                           "); name them instruction, input, output (or prompt, completion), or map them "
                           "(field=column, e.g. instruction=goal,output=target)");
  if (alpaca && !has("output") && !response_optional)
    input_error(where, "no column for the field 'output' (the response to train on)" + how("output", "target"));
  if (alpaca && !has("instruction") && !has("input"))
    input_error(where, "no column for the field 'instruction' or 'input' (the prompt)" + how("instruction", "goal"));
  if (chat && !has("completion") && !response_optional)
    input_error(where, "no column for the field 'completion' (the response to train on)" + how("completion", "target"));
  if (chat && !has("prompt")) input_error(where, "no column for the field 'prompt'" + how("prompt", "goal"));
}

// A CSV / TSV file: each row is the object of its fields, read as a JSON record is.
std::vector<Record> csv_records(std::string_view text, const std::string& name, char sep, bool response_optional,
                                const ColumnMap& columns) {
  const CsvTable t = parse_csv(text, name, sep);
  const std::string header_at = name + ":" + std::to_string(t.header_line);
  std::vector<std::pair<std::string, size_t>> fields;  // field, column index
  std::vector<bool> mapped(t.header.size(), false);
  if (columns.empty()) {
    for (size_t i = 0; i < t.header.size(); ++i)
      if (!t.header[i].empty()) fields.emplace_back(t.header[i], i);
  } else {
    for (const auto& [field, column] : columns) {
      const auto it = std::find(t.header.begin(), t.header.end(), column);
      if (it == t.header.end())
        input_error(header_at, "no column '" + column + "' in the header (the column mapping reads field " + field +
                                   " from it); columns: " + list_text(t.header));
      const size_t i = static_cast<size_t>(it - t.header.begin());
      fields.emplace_back(field, i);
      mapped[i] = true;
    }
  }
  std::set<std::string> names;
  for (const auto& f : fields) names.insert(f.first);
  check_csv_shape(names, header_at, t.header, response_optional);

  std::vector<Record> out;
  out.reserve(t.rows.size());
  for (const CsvRow& row : t.rows) {
    json obj = json::object();
    for (const auto& [field, i] : fields) obj[field] = row.cells[i];
    Record r = to_record(obj, name + ":" + std::to_string(row.line), response_optional);
    if (!columns.empty())
      for (size_t i = 0; i < t.header.size(); ++i)
        if (!mapped[i] && !t.header[i].empty()) r.extra[t.header[i]] = row.cells[i];
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

// PACT's benign records are Alpaca-style; we join instruction and input with a blank
// line (the Alpaca prompt's separator) and send that as the single user message.
std::string alpaca_prompt(const std::string& instruction, const std::string& input) {
  if (input.empty()) return instruction;
  if (instruction.empty()) return input;
  return instruction + "\n\n" + input;
}

// Shared by parse_records (a response is required) and parse_prompt_records (optional).
static std::vector<Record> parse_any(std::string_view text, const std::string& name, bool response_optional,
                                     const ColumnMap& columns) {
  check_column_map(columns, name);
  if (const char sep = csv_separator_for(name)) {
    std::vector<Record> out = csv_records(text, name, sep, response_optional, columns);
    if (out.empty()) input_error(name, "empty dataset: no records (only a header row)");
    return out;
  }
  if (size_t bad = text::unicode::find_invalid_utf8(text); bad != std::string_view::npos)
    input_error(name + ":" + std::to_string(line_of(text, bad)),
                "invalid UTF-8 (byte offset " + std::to_string(bad) + ")");
  size_t first = text.find_first_not_of(" \t\r\n");
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") first = text.find_first_not_of(" \t\r\n", 3);
  if (first == std::string_view::npos) input_error(name, "empty dataset: no records");
  // Records are copied (Record::extra), which recurses once per nesting level.
  if (size_t deep = find_json_too_deep(text); deep != std::string_view::npos)
    input_error(name + ":" + std::to_string(line_of(text, deep)),
                "JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");

  std::vector<Record> out;
  if (text[first] == '[') {
    // One JSON array of records.
    json arr;
    try {
      arr = json::parse(text.substr(first));
    } catch (const json::parse_error& e) {
      input_error(name + ":" + std::to_string(line_of(text, first + (e.byte > 0 ? e.byte - 1 : 0))),
                  std::string("invalid JSON: ") + e.what());
    } catch (const json::exception& e) {  // out_of_range: a number like 1e999
      input_error(name, std::string("invalid JSON: ") + e.what());
    }
    for (size_t i = 0; i < arr.size(); ++i) out.push_back(mapped_record(arr[i], columns, name + ":record " + std::to_string(i + 1), response_optional));
  } else {
    // JSONL: one object per non-blank line.
    size_t line_no = 0, pos = 0;
    while (pos <= text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string_view::npos) end = text.size();
      std::string_view line = text.substr(pos, end - pos);
      ++line_no;
      pos = end + 1;
      if (line_no == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
        if (end == text.size()) break;
        continue;
      }
      const std::string where = name + ":" + std::to_string(line_no);
      json obj;
      try {
        obj = json::parse(line);
      } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
        input_error(where, std::string("invalid JSON: ") + e.what());
      }
      out.push_back(mapped_record(obj, columns, where, response_optional));
      if (end == text.size()) break;
    }
  }
  if (out.empty()) input_error(name, "empty dataset: no records");
  return out;
}

std::vector<Record> parse_records(std::string_view text, const std::string& name, const ColumnMap& columns) {
  return parse_any(text, name, /*response_optional=*/false, columns);
}
std::vector<Record> parse_prompt_records(std::string_view text, const std::string& name, const ColumnMap& columns) {
  return parse_any(text, name, /*response_optional=*/true, columns);
}
std::vector<Record> read_records(const std::string& path, const ColumnMap& columns) {
  return parse_records(read_file(path), path, columns);
}
std::vector<Record> read_prompt_records(const std::string& path, const ColumnMap& columns) {
  return parse_prompt_records(read_file(path), path, columns);
}

}  // namespace safetune::data
