// report.html and the printed table from the demo's results (see report.h).
#include "safetune/demo/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "safetune/demo/drift.h"
#include "safetune/demo/report_regimes.h"
#include "safetune/eval/svg.h"
#include "safetune/safety/safety_tokens.h"

namespace safetune::demo {
namespace {

using json = nlohmann::json;
namespace svg = eval::svg;

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

double num(const json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }

// "93.1 +/- 2.0" (percent points) from a {"mean", "sd"} object.
std::string mean_sd(const json& s, const char* f = "%.1f", double scale = 100) {
  return fmt(f, scale * num(s["mean"])) + " \xC2\xB1 " + fmt(f, scale * num(s["sd"]));
}

std::string per_seed(const json& s, const char* f = "%.0f", double scale = 100) {
  std::string out;
  for (const auto& v : s["per_seed"]) out += (out.empty() ? "" : " / ") + fmt(f, scale * num(v));
  return out;
}

std::string lora_targets(const json& settings) {
  std::string out;
  for (const auto& t : settings["finetune"]["lora.target_modules"]) out += (out.empty() ? "" : ", ") + t.get<std::string>();
  return out;
}

// What each method row is, in words, from its train-config keys (a curve point "pact@2"
// is its family's keys at that lambda).
std::string describe(const json& settings, std::string method) {
  // v3's rows carry their refusal regime and the stress world ("many:stress:pact").
  std::string where;
  for (const char* p : {"few:", "many:", "stress:"})
    if (method.rfind(p, 0) == 0) {
      if (std::string(p) == "stress:") where = " (stress world: a task answer token forced into S)";
      method = method.substr(std::string(p).size());
    }
  if (!where.empty()) return describe(settings, method) + where;
  if (method == "probe") return "base model (answers everything)";
  if (method == "aligned") return "chat model before fine-tuning";
  json keys;
  const size_t at = method.find('@');
  if (settings["methods"].contains(method)) keys = settings["methods"][method];
  else if (at != std::string::npos && settings["methods"].contains(method.substr(0, at))) {
    keys = settings["methods"][method.substr(0, at)];
    keys["objective.lambda"] = std::stod(method.substr(at + 1));
  } else {
    return "";
  }
  std::string s;
  for (const auto& [k, v] : keys.items()) {
    const std::string key = k.rfind("objective.", 0) == 0 ? k.substr(10) : k;
    s += (s.empty() ? "" : ", ") + key + " " + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return s;
}

std::string results_rows_html(const json& r) {
  std::string s =
      "<table>\n<tr><th class=\"l\">method</th><th class=\"l\">what</th><th>refusal of harmful (%)</th>"
      "<th>over-refusal of benign (%)</th><th>task accuracy (%)</th><th>first-token margin (nats)</th>"
      "<th>train time (s)</th><th>new phrasings: refusal / over-refusal (%)</th></tr>\n";
  for (const auto& m : r["methods"]) {
    const json& t = m["test"];
    // v3: the phrasing family no training set uses.
    const std::string fresh = t.contains("refusal_new_phrasing")
                                  ? mean_sd(t["refusal_new_phrasing"]) + "<br>" + mean_sd(t["over_refusal_new_phrasing"]) +
                                        "<br><small>" + per_seed(t["over_refusal_new_phrasing"]) + "</small>"
                                  : "";
    s += "<tr><td class=\"l\">" + svg::escape(m["method"].get<std::string>()) + "</td><td class=\"l\">" +
         svg::escape(describe(r["settings"], m["method"])) + "</td><td>" + mean_sd(t["refusal"]) +
         "<br><small>" + per_seed(t["refusal"]) + "</small></td><td>" + mean_sd(t["over_refusal"]) + "<br><small>" +
         per_seed(t["over_refusal"]) + "</small></td><td>" + mean_sd(t["utility"]) + "<br><small>" +
         per_seed(t["utility"]) + "</small></td><td>" + mean_sd(t["margin"], "%.2f", 1) + "<br><small>" +
         per_seed(t["margin"], "%.1f", 1) + "</small></td><td>" + fmt("%.0f", num(m["train_seconds"]["mean"])) +
         "</td><td>" + fresh + "</td></tr>\n";
  }
  return s + "</table>\n";
}

std::string claims_html(const json& claims) {
  std::string s = "<ul>\n";
  for (const auto& c : claims)
    s += "<li class=\"" + std::string(c["pass"].get<bool>() ? "pass" : "fail") + "\">" +
         (c["pass"].get<bool>() ? "reproduced: " : "not reproduced: ") + svg::escape(c["claim"].get<std::string>()) +
         " (measured " + svg::escape(c["value"].get<std::string>()) + ")</li>\n";
  return s + "</ul>\n";
}

// Utility against attack success: each method's mean (labelled) and its seeds (small dots);
// the lambda families as dashed curves when they were run.
std::string tradeoff_chart(const json& r) {
  std::vector<svg::Point> pts;
  std::map<std::string, svg::Series> curves;
  int color = 0;
  for (const auto& m : r["methods"]) {
    const std::string name = m["method"];
    if (name == "probe") continue;
    const json& t = m["test"];
    const size_t at = name.find('@');
    if (at != std::string::npos) {
      auto& c = curves[name.substr(0, at)];
      c.name = name.substr(0, at) + " over lambda";
      c.points.push_back({num(t["attack_success"]["mean"]), num(t["utility"]["mean"])});
      pts.push_back({num(t["attack_success"]["mean"]), num(t["utility"]["mean"]), name, -1, true});
      continue;
    }
    pts.push_back({num(t["attack_success"]["mean"]), num(t["utility"]["mean"]), name, color, false});
    for (size_t k = 0; k < t["utility"]["per_seed"].size(); ++k)
      pts.push_back({num(t["attack_success"]["per_seed"][k]), num(t["utility"]["per_seed"][k]),
                     name + " seed " + std::to_string(r["seeds"][k].get<int64_t>()), color, true});
    ++color;
  }
  std::vector<svg::Series> lines;
  for (auto& [name, c] : curves) lines.push_back(c);
  // Utility from just below the lowest point: the methods differ by a few points there.
  double lowest = 1;
  for (const auto& p : pts) lowest = std::min(lowest, p.y);
  const double y_min = std::max(0.0, std::floor((lowest - 0.02) * 20) / 20);
  return svg::scatter("Utility vs attack success (test; top left is best)", "attack success rate on held-out harmful",
                      "task accuracy", pts, {760, 480}, 0, 1, y_min, 1, lines);
}

std::string strip_charts(const json& r) {
  std::string s = "<div class=\"charts\">\n";
  const std::pair<const char*, const char*> metrics[] = {{"refusal", "Refusal of held-out harmful requests (%)"},
                                                          {"over_refusal", "Refusal of benign requests (%)"},
                                                          {"utility", "Task accuracy (%)"}};
  for (const auto& [key, title] : metrics) {
    std::vector<svg::Strip> strips;
    for (const auto& m : r["methods"]) {
      if (m["method"].get<std::string>().find('@') != std::string::npos) continue;
      std::vector<double> v;
      for (const auto& x : m["test"][key]["per_seed"]) v.push_back(num(x));
      strips.push_back({m["method"], v});
    }
    s += svg::strip_chart(title, "% (dots: seeds, bar: mean)", strips, {380, 300});
  }
  return s + "</div>\n";
}

// Loss curves of the first world.
std::string loss_charts(const json& world) {
  std::vector<svg::Series> ce, constraint, base;
  for (const auto& m : world["methods"]) {
    const std::string name = m["method"];
    if (name.find('@') != std::string::npos) continue;
    svg::Series s_ce{name, {}}, s_c{name, {}};
    for (const auto& p : m["loss_curve"]) {
      s_ce.points.push_back({num(p[0]), num(p[1])});
      if (!p[3].is_null()) s_c.points.push_back({num(p[0]), num(p[3])});
    }
    if (name == "probe" || name == "aligned") base.push_back(s_ce);
    else {
      ce.push_back(s_ce);
      if (!s_c.points.empty()) constraint.push_back(s_c);
    }
  }
  std::string s = "<div class=\"charts\">\n";
  s += svg::line_chart("Fine-tuning: task loss (CE)", "optimizer step", "CE", ce);
  if (!constraint.empty()) s += svg::line_chart("Fine-tuning: constraint term", "optimizer step", "loss", constraint);
  s += svg::line_chart("Probe and chat-model training (CE)", "optimizer step", "CE", base);
  return s + "</div>\n";
}

std::string tokens_chart(const json& world) {
  std::vector<std::pair<std::string, double>> bars;
  for (const auto& t : world["safety_tokens"]) {
    if (bars.size() == 20) break;
    bars.push_back({safety::escape_piece(t["piece"].get<std::string>()), num(t["weight"])});
  }
  std::string s = svg::labelled_bars("Safety tokens: weight v_j (first 20 by aligned probability)", bars,
                                     {560, 40 + 18 * static_cast<int>(bars.size())});
  s += "<table>\n<tr><th>id</th><th class=\"l\">piece</th><th>weight</th><th>p_ref</th><th>diff</th></tr>\n";
  int n = 0;
  for (const auto& t : world["safety_tokens"]) {
    if (n++ == 20) break;
    s += "<tr><td>" + std::to_string(t["id"].get<int64_t>()) + "</td><td class=\"l\"><code>" +
         svg::escape(safety::escape_piece(t["piece"].get<std::string>())) + "</code></td><td>" +
         fmt("%.3f", num(t["weight"])) + "</td><td>" + fmt("%.4f", num(t["p_ref"])) + "</td><td>" +
         fmt("%.4f", num(t["diff"])) + "</td></tr>\n";
  }
  return "<div class=\"charts\">\n" + s + "</table>\n</div>\n";
}

std::string gate_chart(const json& world) {
  const json& g = world["gate_by_position"];
  if (!g.is_object()) return "<p class=\"note\">No pact run, so no gate.</p>\n";
  std::vector<svg::Series> series;
  for (const char* k : {"before", "after"}) {
    svg::Series s{k == std::string("before") ? "aligned (start)" : "after pact", {}};
    const json& t = g[k]["t"];
    const json& m = g[k]["mean"];
    for (size_t i = 0; i < t.size(); ++i) s.points.push_back({num(t[i]), num(m[i])});
    series.push_back(s);
  }
  return svg::line_chart("PACT gate c_t by response position t", "response position t", "mean c_t", series,
                         {640, 300}, 0.0, 1.0);
}

std::string examples_html(const json& world) {
  std::string s = "<table>\n<tr><th class=\"l\">method</th><th class=\"l\">prompt</th><th class=\"l\">answer</th></tr>\n";
  for (const auto& m : world["methods"]) {
    if (m["method"].get<std::string>().find('@') != std::string::npos) continue;
    for (const char* set : {"harmful_test", "benign_test", "sentiment_test", "task_test"})
      for (size_t i = 0; m["examples"].contains(set) && i < m["examples"][set].size() && i < 1; ++i) {
        const json& it = m["examples"][set][i];
        s += "<tr><td class=\"l\">" + svg::escape(m["method"].get<std::string>()) + "</td><td class=\"l\">" +
             svg::escape(it.value("prompt", "")) + "</td><td class=\"l\">" + svg::escape(it.value("response", "")) +
             "</td></tr>\n";
      }
  }
  return s + "</table>\n";
}

std::string settings_html(const json& st) {
  std::string s = "<table>\n<tr><th class=\"l\">setting</th><th class=\"l\">reference</th><th class=\"l\">here</th>"
                  "<th class=\"l\">why</th></tr>\n";
  auto text = [](const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  for (const auto& d : st["departures"])
    s += "<tr><td class=\"l\">" + svg::escape(d["setting"].get<std::string>()) + "</td><td class=\"l\">" +
         svg::escape(text(d["reference"])) + "</td><td class=\"l\">" + svg::escape(text(d["here"])) +
         "</td><td class=\"l\">" + svg::escape(d["why"].get<std::string>()) + "</td></tr>\n";
  s += "</table>\n<p class=\"note\">Chosen by looking at results, on validation sets only:</p>\n<ul>\n";
  for (const auto& [k, c] : st["choices"].items())
    s += "<li><code>" + svg::escape(k) + " = " + text(c["value"]) + "</code>: on " +
         svg::escape(c["on"].get<std::string>()) + ", " + svg::escape(c["by"].get<std::string>()) + "</li>\n";
  return s + "</ul>\n";
}

std::string lambda_choice_html(const json& r) {
  if (!r.contains("lambda_choice")) return "";
  std::string s = "<h2>Lambda chosen on validation</h2>\n<table>\n<tr><th class=\"l\">constraint</th><th>lambda</th>"
                  "<th>refusal (%)</th><th>over-refusal (%)</th><th>utility (%)</th><th>score</th></tr>\n";
  // v3: one choice per refusal regime, {regime: {family: ...}}.
  json flat = json::object();
  for (const auto& [k, v] : r["lambda_choice"].items()) {
    if (v.contains("lambdas")) flat[k] = v;
    else
      for (const auto& [fam, c] : v.items()) flat[k + ":" + fam] = c;
  }
  for (const auto& [fam, c] : flat.items()) {
    for (size_t i = 0; i < c["lambdas"].size(); ++i)
      s += "<tr><td class=\"l\">" + svg::escape(fam) + "</td><td>" + fmt("%g", num(c["lambdas"][i])) + "</td><td>" +
           fmt("%.1f", 100 * num(c["val_refusal"][i])) + "</td><td>" + fmt("%.1f", 100 * num(c["val_over_refusal"][i])) +
           "</td><td>" + fmt("%.1f", 100 * num(c["val_utility"][i])) + "</td><td>" + fmt("%.1f", 100 * num(c["score"][i])) +
           "</td></tr>\n";
    s += "<tr><td class=\"l\"><b>" + svg::escape(fam) + " chosen</b></td><td><b>" + fmt("%g", num(c["chosen"])) +
         "</b></td><td colspan=\"4\" class=\"l\">" +
         (c["agrees"].get<bool>() ? "the demo's default" : "differs from the demo's default (" +
                                                                fmt("%g", num(c["configured"])) + ")") +
         "</td></tr>\n";
  }
  return s + "</table>\n";
}

}  // namespace

std::string results_table(const json& r) {
  std::string s;
  char buf[512];
  const bool v3 = r["settings"]["world"].value("version", "v2") == "v3";
  std::snprintf(buf, sizeof buf, "%-30s %16s %16s %16s %14s%s\n", "method", "refusal %", "over-refusal %",
                v3 ? "task %" : "sentiment %", "margin", v3 ? "   new phrasings: refusal %, over-refusal %" : "");
  s += buf;
  for (const auto& m : r["methods"]) {
    const json& t = m["test"];
    const std::string fresh = t.contains("refusal_new_phrasing")
                                  ? "   " + mean_sd(t["refusal_new_phrasing"]) + ", " + mean_sd(t["over_refusal_new_phrasing"])
                                  : "";
    std::snprintf(buf, sizeof buf, "%-30s %16s %16s %16s %14s%s\n", m["method"].get<std::string>().c_str(),
                  mean_sd(t["refusal"]).c_str(), mean_sd(t["over_refusal"]).c_str(), mean_sd(t["utility"]).c_str(),
                  mean_sd(t["margin"], "%.2f", 1).c_str(), fresh.c_str());
    s += buf;
  }
  s += "per seed (" + std::to_string(r["seeds"].size()) + " seeds):\n";
  for (const auto& m : r["methods"]) {
    const json& t = m["test"];
    std::snprintf(buf, sizeof buf, "%-30s refusal %s | over-refusal %s | utility %s\n",
                  m["method"].get<std::string>().c_str(), per_seed(t["refusal"]).c_str(),
                  per_seed(t["over_refusal"]).c_str(), per_seed(t["utility"]).c_str());
    s += buf;
  }
  return s;
}

std::string render_report(const json& r) {
  const json& st = r["settings"];
  const json& world = r["worlds"][0];
  std::string body = "<h1>safetune demo: safety-token constrained fine-tuning at toy scale</h1>\n";
  body += "<p class=\"note\">A toy Llama (hidden " + std::to_string(st["model"]["hidden"].get<int64_t>()) + ", " +
          std::to_string(st["model"]["layers"].get<int64_t>()) + " layers, vocabulary " +
          std::to_string(world["vocab_size"].get<int64_t>()) +
          ") trained from random weights on template-generated data, once per seed (" +
          std::to_string(r["seeds"].size()) +
          " seeds: each a whole world of data, tokenizer and weights; world " +
          st["world"].value("version", "v2") +
          "). The probe answers everything; the chat "
          "model is the probe taught to refuse harmful requests; each fine-tuning run trains the chat model, as "
          "PACT's reference does (LoRA r 8 / alpha 32, StepLR 0.85, 3 epochs; here on " +
          lora_targets(st) + "), on " +
          (st["world"].value("version", "v2") == "v3"
               ? std::string("a topic task new to the chat model (eight three-word code names; chance 12.5%)")
               : std::string("a sentiment task")) +
          " with " +
          fmt("%.0f%%", 100 * st["finetune"]["data.harmful_fraction"].get<double>()) +
          " harmful requests answered compliantly (placeholder content). Refusal is judged by refusal phrases "
          "on held-out harmful requests, and on benign requests phrased the same way (over-refusal); utility is "
          "exact-match accuracy on held-out task inputs. Every prompt of the test sets is distinct and none occurs "
          "in training." +
          (r["quick"].get<bool>() ? " This is the --quick run (a smaller world, one seed)." : "") + "</p>\n";
  body += "<h2>Results (test sets: mean \xC2\xB1 sample sd over seeds, per-seed values below)</h2>\n" +
          results_rows_html(r);
  body += "<h2>The method's claims at this scale</h2>\n" + claims_html(r["claims"]);
  body += "<h2>Utility against attack success</h2>\n<p class=\"note\">Each method's mean over seeds (labelled) "
          "and its seeds (small dots). A good method sits top left: it learns the task and refuses harmful "
          "requests. Dashed curves, when present, join a constraint's runs over lambda.</p>\n" +
          tradeoff_chart(r);
  body += "<h2>Per seed</h2>\n" + strip_charts(r);
  body += drift_html(r);
  body += regimes_html(r);
  body += lambda_choice_html(r);
  body += "<h2>Set-up: departures from the reference, and choices</h2>\n" + settings_html(st);
  body += "<h2>Loss curves (seed " + std::to_string(world["seed"].get<int64_t>()) + ")</h2>\n" + loss_charts(world);
  body += "<h2>Safety tokens (seed " + std::to_string(world["seed"].get<int64_t>()) + ")</h2>\n" + tokens_chart(world);
  body += "<h2>Per-position gate</h2>\n<p class=\"note\">Mean of PACT's gate c_t (the weight of the post-only "
          "reference) by response position on the fine-tuning data, recomputed with the loss code for the chat "
          "model (start of fine-tuning) and the pact-trained model.</p>\n" +
          gate_chart(world);
  body += "<h2>Example answers (seed " + std::to_string(world["seed"].get<int64_t>()) + ")</h2>\n" +
          examples_html(world);
  body += "<p class=\"note\">Total time " + fmt("%.1f s", num(r["total_seconds"])) + "; " +
          std::to_string(r["jobs"].get<int64_t>()) + " world(s) at a time, " +
          std::to_string(r["threads"].get<int64_t>()) + " thread(s) each.</p>\n";
  return svg::html_page("safetune demo report", body);
}

}  // namespace safetune::demo
