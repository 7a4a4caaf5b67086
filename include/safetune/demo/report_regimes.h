// report.html's v3 section: per refusal regime and seed, the safety-token set S (its
// pieces and the sign of v, the stress world's forced token) and the frozen reference's
// mass on S at refusal, task-answer and attacker rows. Empty for v2 results.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace safetune::demo {

std::string regimes_html(const nlohmann::json& results);

}  // namespace safetune::demo
