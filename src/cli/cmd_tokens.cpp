// safetune tokens: PACT step 1, the safety tokens of an aligned model found against a
// probe model on refusal examples, written to tokens.json (see safety/safety_tokens.h).
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "command.h"
#include "safetune/core/threads.h"
#include "safetune/data/columns.h"
#include "safetune/safety/safety_tokens.h"

namespace {

struct Opts {
  std::string aligned, probe, data, out, columns;
  safetune::safety::DiscoverOptions d;
};

int run(const Opts& o) {
  using namespace safetune;
  set_compute_threads(0);
  safety::DiscoverOptions d = o.d;
  d.columns = data::parse_column_map(o.columns, "--columns");
  const bool tty = isatty(STDERR_FILENO);
  const auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](int64_t done, int64_t total) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double eta = done > 0 ? s * double(total - done) / double(done) : 0.0;
    std::fprintf(stderr, "%stokens: %lld/%lld examples, %.1fs elapsed, eta %.1fs%s", tty ? "\r" : "",
                 static_cast<long long>(done), static_cast<long long>(total), s, eta, tty ? "" : "\n");
    if (tty && done == total) std::fprintf(stderr, "\n");
  };
  safety::SafetyTokens t = safety::discover_safety_tokens(o.aligned, o.probe, o.data, d, progress);
  safety::write_safety_tokens(o.out, t);
  int64_t positive = 0;
  for (const auto& s : t.tokens) positive += s.weight > 0;
  std::printf("wrote %s: %zu safety tokens (%lld with positive weight) from %lld examples, %lld positions\n",
              o.out.c_str(), t.tokens.size(), static_cast<long long>(positive),
              static_cast<long long>(t.num_examples), static_cast<long long>(t.num_positions));
  return 0;
}

safetune::cli::Command cmd("tokens", "find the safety tokens of an aligned model against a probe model (PACT step 1)",
                           [](CLI::App& sub) {
                             auto o = std::make_shared<Opts>();
                             sub.add_option("--aligned", o->aligned, "aligned (chat) model directory")->required();
                             sub.add_option("--probe", o->probe, "probe (base) model directory, same vocabulary")
                                 ->required();
                             sub.add_option("--data", o->data, "refusal records ({input, output}: JSON, JSONL, CSV or TSV)")
                                 ->required();
                             sub.add_option("--columns", o->columns,
                                            "which column of --data feeds each field: field=column,... "
                                            "(e.g. input=goal,output=refusal)");
                             sub.add_option("--out", o->out, "output tokens.json")->required();
                             sub.add_option("--topk", o->d.topk, "size of the safety-token set S")
                                 ->capture_default_str();
                             sub.add_option("--max-resp-len", o->d.max_resp_len, "response tokens per example")
                                 ->capture_default_str();
                             sub.add_option("--mode", o->d.mode, "p_diff | pref_logratio")->capture_default_str();
                             sub.add_option("--temperature", o->d.temperature, "softmax temperature tau")
                                 ->capture_default_str();
                             sub.add_option("--limit", o->d.limit, "use the first K records (0 = all)")
                                 ->capture_default_str();
                             sub.add_option("--batch-size", o->d.batch_size, "examples per forward pass")
                                 ->capture_default_str();
                             sub.add_option("--chat-template", o->d.chat_template,
                                            "the aligned model's chat template (auto = detect)")
                                 ->capture_default_str();
                             sub.add_option("--device", o->d.device, "cpu | cuda[:N]")->capture_default_str();
                             return [o]() { return run(*o); };
                           });

}  // namespace
