// CSV / TSV tables (see csv.h): one pass over the bytes, counting physical lines so that
// every message can point at the line (and column) a person would open the file at.
#include "safetune/data/csv.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>

#include "safetune/core/error.h"
#include "safetune/text/unicode.h"

namespace safetune::data {
namespace {

// A byte as a message shows it: printable ASCII as itself, anything else as its code.
std::string shown(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7F) return std::string("'") + c + "'";
  char buf[16];
  std::snprintf(buf, sizeof buf, "byte 0x%02X", u);
  return buf;
}

class Reader {
 public:
  Reader(std::string_view text, const std::string& name, char sep) : s_(text), name_(name), sep_(sep) {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = line_start_ = 3;  // a BOM is no part of the first name
  }

  // Skips blank lines; false at the end of the text.
  bool next_record() {
    while (pos_ < s_.size()) {
      if (s_[pos_] == '\n') {
        new_line(pos_ + 1);
      } else if (s_[pos_] == '\r' && (pos_ + 1 == s_.size() || s_[pos_ + 1] == '\n')) {
        ++pos_;
      } else {
        return true;
      }
    }
    return false;
  }

  // Reads one record (next_record() returned true); `line` is where it starts.
  std::vector<std::string> record(size_t& line) {
    line = line_;
    std::vector<std::string> cells;
    for (;;) {
      cells.push_back(at_quote() ? quoted() : unquoted());
      if (pos_ < s_.size() && s_[pos_] == sep_) {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '\r') ++pos_;
      if (pos_ < s_.size() && s_[pos_] == '\n') new_line(pos_ + 1);
      return cells;
    }
  }

 private:
  bool at_quote() const { return pos_ < s_.size() && s_[pos_] == '"'; }
  size_t column() const { return pos_ - line_start_ + 1; }
  void new_line(size_t next) {
    ++line_;
    pos_ = line_start_ = next;
  }
  // A line ends at LF, or CRLF; a CR at the very end of the file ends it too.
  bool at_line_end(size_t p) const {
    return p >= s_.size() || s_[p] == '\n' || (s_[p] == '\r' && (p + 1 == s_.size() || s_[p + 1] == '\n'));
  }

  std::string unquoted() {
    const size_t begin = pos_;
    while (pos_ < s_.size() && s_[pos_] != sep_ && !at_line_end(pos_)) ++pos_;
    return std::string(s_.substr(begin, pos_ - begin));
  }

  std::string quoted() {
    const size_t open_line = line_, open_col = column();
    ++pos_;
    std::string cell;
    for (;;) {
      if (pos_ >= s_.size())
        input_error(name_ + ":" + std::to_string(open_line) + ":" + std::to_string(open_col),
                    "the quoted field that starts here is never closed (a \" is missing)");
      const char c = s_[pos_];
      if (c == '"') {
        if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '"') {
          cell += '"';
          pos_ += 2;
          continue;
        }
        ++pos_;
        break;
      }
      cell += c;
      if (c == '\n') new_line(pos_ + 1);
      else ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] != sep_ && !at_line_end(pos_))
      input_error(name_ + ":" + std::to_string(line_) + ":" + std::to_string(column()),
                  "expected " + std::string(sep_ == '\t' ? "a tab" : "','") +
                      " or the end of the line after a closing quote, got " + shown(s_[pos_]) +
                      " (a quote inside a quoted field is written \"\")");
    return cell;
  }

  std::string_view s_;
  const std::string& name_;
  char sep_;
  size_t pos_ = 0, line_ = 1, line_start_ = 0;
};

}  // namespace

CsvTable parse_csv(std::string_view text, const std::string& name, char separator) {
  if (const size_t bad = text::unicode::find_invalid_utf8(text); bad != std::string_view::npos) {
    const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + bad, '\n'));
    const size_t line_begin = text.substr(0, bad).rfind('\n');
    const size_t col = bad - (line_begin == std::string_view::npos ? 0 : line_begin + 1) + 1;
    input_error(name + ":" + std::to_string(line) + ":" + std::to_string(col),
                "invalid UTF-8 (byte offset " + std::to_string(bad) + ")");
  }
  Reader in(text, name, separator);
  CsvTable t;
  if (!in.next_record()) input_error(name, "empty file: no header row (the first line names the columns)");
  t.header = in.record(t.header_line);
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < t.header.size(); ++i) {
    if (t.header[i].empty()) continue;  // unnamed: a pandas index column, never mapped
    auto [it, fresh] = seen.emplace(t.header[i], i);
    if (!fresh)
      input_error(name + ":" + std::to_string(t.header_line),
                  "column '" + t.header[i] + "' appears twice in the header (columns " + std::to_string(it->second + 1) +
                      " and " + std::to_string(i + 1) + ")");
  }
  while (in.next_record()) {
    CsvRow row;
    row.cells = in.record(row.line);
    if (row.cells.size() != t.header.size())
      input_error(name + ":" + std::to_string(row.line),
                  "expected " + std::to_string(t.header.size()) + " fields (as the header on line " +
                      std::to_string(t.header_line) + "), found " + std::to_string(row.cells.size()));
    t.rows.push_back(std::move(row));
  }
  return t;
}

char csv_separator_for(const std::string& path) {
  auto ends_with = [&](const char* ext) {
    const size_t n = std::char_traits<char>::length(ext);
    if (path.size() < n) return false;
    for (size_t i = 0; i < n; ++i)
      if (std::tolower(static_cast<unsigned char>(path[path.size() - n + i])) != ext[i]) return false;
    return true;
  };
  if (ends_with(".csv")) return ',';
  if (ends_with(".tsv")) return '\t';
  return '\0';
}

}  // namespace safetune::data
