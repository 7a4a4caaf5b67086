// The drift curve: refusal and task accuracy measured while the chat model is
// fine-tuned (train.eval_every with a suite of the validation sets), per method, drawn
// in report.html with each seed thin and the mean over seeds bold.
//
// Which runs are watched is settings["drift"]: {"methods", "regimes", "points"} (points:
// evaluations per run, the first at step 0 and the last at the last step). Validation
// sets only: the drift curve is what a user watches, never a test number.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "safetune/train/config.h"

namespace safetune::demo {

// Whether `method` of `regime` ("" for v2's one chat model) is watched.
bool drift_watched(const nlohmann::json& settings, const std::string& regime, const std::string& method);

// Sets train.eval_every (about settings["drift"]["points"] evaluations over the run) and
// the evaluation's batch size; train.eval_suite is set by write_drift_suite.
void watch_drift(train::RunConfig& cfg, const nlohmann::json& settings);

// Writes the suite the run is evaluated on (the validation harmful requests and task
// inputs of `data_dir`, their answer lengths from settings["eval"]) to `path`.
void write_drift_suite(const std::string& path, const std::string& data_dir, const nlohmann::json& settings);

// {"step": [...], "refusal": [...], "utility": [...]} from a run's metrics.jsonl; null
// when the run was not evaluated while training.
nlohmann::json drift_curve(const std::string& metrics_path);

// report.html's drift section (empty when no run was watched).
std::string drift_html(const nlohmann::json& results);

}  // namespace safetune::demo
