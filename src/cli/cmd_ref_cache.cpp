// safetune ref-cache CONFIG.yaml [key=value ...] --out FILE: precompute the frozen
// reference's safety-token logits (full context and post-only) for every training example
// of the run the config describes, for objective.reference=cache (see train/ref_cache.h).
#include <unistd.h>

#include <cstdio>

#include "command.h"
#include "config_args.h"
#include "safetune/core/error.h"
#include "safetune/train/config.h"
#include "safetune/train/ref_cache.h"

namespace {

struct Opts : safetune::cli::ConfigArgs {
  std::string out;
};

const char* const kFooter =
    "The cache is bound to sha256 hashes of the model, the dataset, the tokenizer/template/max_length\n"
    "settings and tokens.json; training with objective.reference=cache objective.ref_cache=FILE refuses\n"
    "it when any of them changed. Values are fp32.\n"
    "Example:\n"
    "  safetune ref-cache run.yaml objective.tokens=tokens.json --out ref.safetensors";

safetune::cli::Command cmd(
    "ref-cache", "precompute the reference's safety-token logits for objective.reference=cache", [](CLI::App& sub) {
      auto o = std::make_shared<Opts>();
      safetune::cli::add_config_args(sub, *o, "YAML run config (the same as for train)");
      sub.add_option("--out", o->out, "the cache file to write (safetensors)");
      sub.footer(kFooter);
      return [o]() -> int {
        using namespace safetune;
        const train::RunConfig cfg = cli::load_config_args(
            *o, "ref-cache", "give a config file: safetune ref-cache CONFIG.yaml --out FILE", "objective.tokens=tokens.json");
        if (o->out.empty()) input_error("ref-cache", "give --out FILE");
        const bool tty = isatty(2);
        train::RefCacheInfo info = train::build_ref_cache(cfg, o->out, [&](int64_t done, int64_t total) {
          if (tty) std::fprintf(stderr, "\rref-cache: %lld/%lld examples", (long long)done, (long long)total);
        });
        if (tty) std::fputc('\n', stderr);
        std::printf("wrote %s: %lld examples, %lld response positions, %lld safety tokens (fp32)\n", o->out.c_str(),
                    (long long)info.examples, (long long)info.positions, (long long)info.columns);
        return 0;
      };
    });

}  // namespace
