// The demo's report: report.html from results.json, self-contained (inline SVG and CSS,
// no scripts, nothing fetched), and the table `safetune demo` prints.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace safetune::demo {

// The whole HTML document.
std::string render_report(const nlohmann::json& results);

// The results table as fixed-width text: per method, mean +/- sd over seeds of the test
// metrics, then the per-seed values.
std::string results_table(const nlohmann::json& results);

}  // namespace safetune::demo
