// report.html's v3 section (see report_regimes.h).
#include "safetune/demo/report_regimes.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include "safetune/eval/svg.h"
#include "safetune/safety/safety_tokens.h"

namespace safetune::demo {
namespace {

using json = nlohmann::json;

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// "I+ 'm+ sorry- ..." : each piece of S with the sign of its v; forced tokens marked.
std::string pieces_html(const json& set) {
  std::string s;
  for (const auto& t : set["tokens"]) {
    const bool forced = std::find(set["forced"].begin(), set["forced"].end(), t["id"]) != set["forced"].end();
    const std::string piece = eval::svg::escape(safety::escape_piece(t["piece"].get<std::string>()));
    s += std::string(forced ? "<b>" : "") + "<code>" + piece + "</code>" +
         (t["weight"].get<double>() > 0 ? "+" : "&minus;") + (forced ? " (forced)</b>" : "") + " ";
  }
  return s;
}

// Every fine-tuned row's logged loss terms beside its task loss: the constraint's value
// and its parts (safety_mass: the mass term and the within-S shape term, logged apart).
std::string loss_terms_html(const json& r) {
  std::set<std::string> keys;
  for (const auto& m : r["methods"])
    if (m.contains("loss_terms"))
      for (const auto& [k, v] : m["loss_terms"].items()) keys.insert(k);
  keys.erase("total");
  if (keys.size() <= 1) return "";
  std::string s = "<h3>Loss terms (mean over each run's logged steps, then over seeds)</h3>\n<table>\n<tr><th "
                  "class=\"l\">method</th>";
  for (const auto& k : keys) s += "<th>" + eval::svg::escape(k) + "</th>";
  s += "</tr>\n";
  for (const auto& m : r["methods"]) {
    const std::string name = m["method"];
    if (!m.contains("loss_terms") || m["loss_terms"].empty() || name.find("aligned") != std::string::npos ||
        name == "probe")
      continue;
    s += "<tr><td class=\"l\">" + eval::svg::escape(name) + "</td>";
    for (const auto& k : keys)
      s += "<td>" + (m["loss_terms"].contains(k) ? fmt("%.4f", m["loss_terms"][k]["mean"].get<double>()) : "") + "</td>";
    s += "</tr>\n";
  }
  return s + "</table>\n";
}

}  // namespace

std::string regimes_html(const json& r) {
  if (!r.contains("regimes")) return "";
  std::string s = "<h2>Refusal regimes: the safety tokens and the reference's mass on them</h2>\n"
                  "<p class=\"note\">Per seed: the pieces of S in order of the chat model's probability on "
                  "refusals, each with the sign of v (+ gets target mass in faithful pact, &minus; gets none); "
                  "the frozen reference's mean probability mass on S at the response positions of refusals, of "
                  "the task's answers and of the attacker's compliant answers.</p>\n";
  for (const auto& [regime, v] : r["regimes"].items()) {
    s += "<h3>" + eval::svg::escape(regime) + " refusal phrasings</h3>\n";
    if (v.contains("claims")) {
      s += "<ul>\n";
      for (const auto& c : v["claims"])
        s += "<li class=\"" + std::string(c["pass"].get<bool>() ? "pass" : "fail") + "\">" +
             eval::svg::escape(c["claim"].get<std::string>()) + " (measured " +
             eval::svg::escape(c["value"].get<std::string>()) + ")</li>\n";
      s += "</ul>\n";
    }
    s += "<table>\n<tr><th>seed</th><th>|S|, v &gt; 0 / &le; 0</th><th>mass on S: refusal rows</th>"
         "<th>answer rows</th><th>attacker rows</th><th class=\"l\">S (pieces, sign of v)</th></tr>\n";
    for (const auto& w : r["worlds"]) {
      if (!w.contains("regimes") || !w["regimes"].contains(regime)) continue;
      const json& g = w["regimes"][regime];
      const json& set = g["safety_set"];
      const json& mass = g["reference_mass"];
      s += "<tr><td>" + std::to_string(w["seed"].get<int64_t>()) + "</td><td>" +
           std::to_string(set["tokens"].size()) + ", " + std::to_string(set["positive_v"].get<int>()) + " / " +
           std::to_string(set["negative_v"].get<int>()) + "</td><td>" +
           fmt("%.3f", mass["refusal_rows"]["mean_mass_on_s"].get<double>()) + "</td><td>" +
           fmt("%.3f", mass["answer_rows"]["mean_mass_on_s"].get<double>()) + "</td><td>" +
           fmt("%.3f", mass["attack_rows"]["mean_mass_on_s"].get<double>()) + "</td><td class=\"l\">" +
           pieces_html(set) + "</td></tr>\n";
      if (g.contains("stress_safety_set"))
        s += "<tr><td></td><td colspan=\"4\" class=\"l\">stress world's S</td><td class=\"l\">" +
             pieces_html(g["stress_safety_set"]) + "</td></tr>\n";
    }
    s += "</table>\n";
  }
  return s + loss_terms_html(r);
}

}  // namespace safetune::demo
