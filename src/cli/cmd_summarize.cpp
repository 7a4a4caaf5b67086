// safetune summarize RUN_DIR...: the varying config keys of a set of runs against what
// they measured (eval rates, final losses, wall time, tokens/s); seeds averaged.
#include <cstdio>
#include <string>
#include <vector>

#include "command.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/eval/summarize.h"

namespace {

struct Opts {
  std::vector<std::string> dirs;
  bool csv = false;
  std::string out, html;
};

int run(const Opts& o) {
  using namespace safetune;
  std::vector<eval::RunRecord> runs;
  for (const auto& d : o.dirs) runs.push_back(eval::read_run(d));
  const eval::SummaryTable t = eval::summarize(runs);
  const std::string text = o.csv ? eval::to_csv(t) : eval::to_markdown(t);
  std::fputs(text.c_str(), stdout);
  if (!o.out.empty()) write_file_atomic(o.out, text);
  if (!o.html.empty()) write_file_atomic(o.html, eval::to_html(t, runs));
  return 0;
}

safetune::cli::Command cmd(
    "summarize", "table of several runs: varying config keys vs eval rates, final losses, time", [](CLI::App& sub) {
      auto o = std::make_shared<Opts>();
      sub.add_option("runs", o->dirs,
                     "run directories (config.resolved.yaml, metrics.jsonl, results.json from `safetune eval`)")
          ->required();
      sub.add_flag("--csv", o->csv, "CSV instead of a markdown table (each metric with a std column)");
      sub.add_option("--out", o->out, "also write the table to this file");
      sub.add_option("--html", o->html, "also write a self-contained report.html (table + utility vs ASR scatter)");
      sub.footer(
          "Columns: the config keys that differ between the runs, the number of runs in the row, then per eval set "
          "'<set> refusal' and '<set> ASR' (safety) or '<set> acc' (utility), 'final <term>' (the last step's loss "
          "terms), 'train s' (elapsed at the last step) and 'tokens/s' (mean over steps). Runs that differ only in "
          "train.seed form one row: mean ± sample standard deviation.");
      return [o]() { return run(*o); };
    });

}  // namespace
