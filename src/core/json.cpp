// JSON text parsed with its errors named (see json.h).
#include "safetune/core/json.h"

#include "safetune/core/error.h"

namespace safetune {

nlohmann::json parse_json(std::string_view text, const std::string& where) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    const std::string what = e.what();
    input_error(where, "malformed JSON: " + what.substr(0, what.find('\n')));
  }
}

}  // namespace safetune
