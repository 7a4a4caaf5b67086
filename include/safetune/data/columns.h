// A column mapping: which column of a file feeds which record field, so that a dataset
// whose columns have other names is read as it ships (AdvBench's CSV: goal, target).
//
//   instruction=goal,output=target      the text form (`--columns`, and the scalar form of
//                                       data.columns); spaces around names are dropped
//   {instruction: goal, output: target} the same as a YAML mapping (the config)
//
// The key is a record field (records.h: instruction, input, output, prompt, completion,
// messages), the value a CSV/TSV header name or a JSON key. Mapped columns become those
// fields; the file's other columns are kept as the record's extra fields under their own
// names. An empty mapping reads every column (or key) as the field of its own name.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace safetune::data {

using ColumnMap = std::map<std::string, std::string>;  // field -> column

// The fields a mapping may fill.
const std::vector<std::string>& record_field_names();

// Parses the text form; InputError at `where` for an item without '=', an empty name, an
// unknown field or a field given twice.
ColumnMap parse_column_map(const std::string& text, const std::string& where);

// Checks a mapping built elsewhere (e.g. from a YAML or JSON mapping): the same rules.
void check_column_map(const ColumnMap& columns, const std::string& where);

// The text form, fields in order: "instruction=goal,output=target"; "" for none.
std::string column_map_text(const ColumnMap& columns);

}  // namespace safetune::data
