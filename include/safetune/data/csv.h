// CSV (RFC 4180) and TSV tables with a header row, as datasets ship them (AdvBench's
// harmful_behaviors.csv: goal,target).
//
// Fields are split on the separator (',' or '\t'); a field that starts with '"' is quoted:
// it may hold separators, line breaks and doubled quotes ("" = one "), and must be followed
// by a separator or the end of the line. A quote inside an unquoted field is kept as it is
// (5" screen), as Python's csv module and pandas do. Lines end with LF or CRLF; a CRLF
// inside quotes is kept. A UTF-8 byte-order mark before the header is dropped; blank
// lines are skipped. TSV files take the same quoting (what Python's csv module writes with
// delimiter='\t').
//
// Errors are InputErrors naming "file:line" (the physical line where the record starts,
// however many quoted line breaks come before it), and ":column" (1-based, in bytes) for
// what is wrong at one place: text after a closing quote, a quote never closed. A row with
// another number of fields than the header, a duplicate column name, invalid UTF-8 and a
// file without a header are errors too.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace safetune::data {

struct CsvRow {
  size_t line = 0;                 // physical line (1-based) where the row starts
  std::vector<std::string> cells;  // as many as the header has columns
};

struct CsvTable {
  std::vector<std::string> header;  // column names; an empty name (a pandas index column) is allowed
  size_t header_line = 0;           // physical line of the header (after leading blank lines)
  std::vector<CsvRow> rows;
};

// Parses `text` (the whole file; `name` is used in messages) with `separator` ',' or '\t'.
CsvTable parse_csv(std::string_view text, const std::string& name, char separator = ',');

// The separator a file's name asks for: ',' for *.csv, '\t' for *.tsv (case-insensitive),
// '\0' for anything else.
char csv_separator_for(const std::string& path);

}  // namespace safetune::data
