// JSON text parsed with its errors named: InputError "WHERE: malformed JSON: <the parser's
// first line>" instead of nlohmann's exception. (Untrusted files are first checked against
// the nesting limit of json_depth.h where their values are copied or printed.)
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace safetune {

nlohmann::json parse_json(std::string_view text, const std::string& where);

}  // namespace safetune
