// Utility metrics: exact match, regex, final number (see metrics.h for the rules).
#include "safetune/eval/metrics.h"

#include <cmath>
#include <cstdlib>

namespace safetune::eval {

std::string strip(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  size_t b = 0, e = s.size();
  while (b < e && space(s[b])) ++b;
  while (e > b && space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

bool exact_match(std::string_view answer, std::string_view label) { return strip(answer) == strip(label); }

std::optional<std::string> regex_extract(std::string_view answer, const std::regex& pattern) {
  std::string a(answer);
  std::smatch m;
  if (!std::regex_search(a, m, pattern)) return std::nullopt;
  // A pattern with groups names what it wants in group 1 (e.g. "Answer: (\w+)").
  if (m.size() > 1) return m[1].matched ? std::optional<std::string>(m[1].str()) : std::nullopt;
  return m[0].str();
}

bool regex_match_label(std::string_view answer, const std::regex& pattern, std::string_view label) {
  auto got = regex_extract(answer, pattern);
  return got && strip(*got) == strip(label);
}

// Scans by hand rather than with std::regex: a number is [-]digits with optional
// thousands groups ",ddd", then an optional ".digits". A comma not followed by exactly
// three digits ends the number ("1,2,3" is three numbers); a trailing "." is punctuation.
std::optional<std::string> last_number_text(std::string_view s) {
  auto digit = [&](size_t i) { return i < s.size() && s[i] >= '0' && s[i] <= '9'; };
  std::optional<std::string> last;
  size_t i = 0;
  while (i < s.size()) {
    if (!digit(i)) { ++i; continue; }
    size_t start = i;
    bool neg = start > 0 && s[start - 1] == '-' && !(start > 1 && digit(start - 2));  // "3-4" is not -4
    std::string num;
    while (digit(i)) num += s[i++];
    // Thousands groups only right after the first run of 1-3 digits.
    if (num.size() <= 3) {
      while (i < s.size() && s[i] == ',' && digit(i + 1) && digit(i + 2) && digit(i + 3) && !digit(i + 4)) {
        num += s.substr(i + 1, 3);
        i += 4;
      }
    }
    if (i < s.size() && s[i] == '.' && digit(i + 1)) {
      num += '.';
      ++i;
      while (digit(i)) num += s[i++];
    }
    last = (neg ? "-" : "") + num;
  }
  return last;
}

std::optional<long double> final_number_of(std::string_view text) {
  auto t = last_number_text(text);
  if (!t) return std::nullopt;
  return std::strtold(t->c_str(), nullptr);
}

bool final_number_match(std::string_view answer, std::string_view label) {
  auto a = final_number_of(answer), b = final_number_of(label);
  if (!a || !b) return false;
  // Decimal text parsed the same way gives the same value; the tolerance only absorbs
  // "0.1" written with more digits than long double keeps.
  long double scale = std::max<long double>(1.0L, std::fabs(*b));
  return std::fabs(*a - *b) <= 1e-12L * scale;
}

}  // namespace safetune::eval
