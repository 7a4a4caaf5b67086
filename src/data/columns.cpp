// Column mappings (see columns.h).
#include "safetune/data/columns.h"

#include <algorithm>

#include "safetune/core/error.h"

namespace safetune::data {
namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::string fields_text() {
  std::string s;
  for (const std::string& f : record_field_names()) s += (s.empty() ? "" : ", ") + f;
  return s;
}

void check_entry(const std::string& field, const std::string& column, const std::string& where) {
  if (field.empty()) input_error(where, "column mapping: a field name is empty (expected field=column)");
  const auto& known = record_field_names();
  // A typo in a field name would otherwise surface later as a record of unknown shape.
  if (std::find(known.begin(), known.end(), field) == known.end())
    input_error(where, "column mapping: unknown field '" + field + "' (fields: " + fields_text() + ")");
  if (column.empty()) input_error(where, "column mapping: field '" + field + "' maps to an empty column name");
}

}  // namespace

const std::vector<std::string>& record_field_names() {
  static const std::vector<std::string> names = {"instruction", "input", "output", "prompt", "completion", "messages"};
  return names;
}

ColumnMap parse_column_map(const std::string& text, const std::string& where) {
  ColumnMap out;
  if (trim(text).empty()) return out;
  size_t pos = 0;
  for (;;) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      input_error(where, "column mapping: '" + trim(item) + "' is not field=column (e.g. instruction=goal,output=target)");
    const std::string field = trim(item.substr(0, eq)), column = trim(item.substr(eq + 1));
    check_entry(field, column, where);
    if (!out.emplace(field, column).second) input_error(where, "column mapping: field '" + field + "' is mapped twice");
    if (comma == text.size()) break;
    pos = comma + 1;
  }
  return out;
}

void check_column_map(const ColumnMap& columns, const std::string& where) {
  for (const auto& [field, column] : columns) check_entry(field, column, where);
}

std::string column_map_text(const ColumnMap& columns) {
  std::string s;
  for (const auto& [field, column] : columns) s += (s.empty() ? "" : ",") + field + "=" + column;
  return s;
}

}  // namespace safetune::data
