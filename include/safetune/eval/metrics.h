// Utility metrics: is a model's answer right, for the three answer styles evaluation
// sets use. Each takes the generated answer and the gold label as text.
//
//   exact_match   SST-2 style: the answer, whitespace-stripped at both ends, equals the
//                 stripped label exactly (case and punctuation count).
//   regex         AG News style: the first match of a pattern in the answer (its first
//                 capture group when the pattern has one, else the whole match) equals
//                 the stripped label exactly. No match: wrong.
//   final_number  GSM8K style: the last number in the answer equals the last number in
//                 the label ("... #### 72" and "72" are both 72). Numbers are an optional
//                 minus, digits with optional thousands commas ("1,234"), an optional
//                 fraction ("3.5"); commas are stripped and the values compared as
//                 numbers, so "72.0" equals "72". A label without a number is an error
//                 for the caller to report (final_number_of returns nothing).
#pragma once
#include <optional>
#include <regex>
#include <string>
#include <string_view>

namespace safetune::eval {

// Leading and trailing ASCII whitespace removed.
std::string strip(std::string_view s);

bool exact_match(std::string_view answer, std::string_view label);

// What `pattern` picks out of `answer` (first match; group 1 when the pattern has groups).
std::optional<std::string> regex_extract(std::string_view answer, const std::regex& pattern);
bool regex_match_label(std::string_view answer, const std::regex& pattern, std::string_view label);

// The last number written in `text` (commas stripped), as text and as a value.
std::optional<std::string> last_number_text(std::string_view text);
std::optional<long double> final_number_of(std::string_view text);
bool final_number_match(std::string_view answer, std::string_view label);

}  // namespace safetune::eval
