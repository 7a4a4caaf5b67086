// safetune logits: teacher-forced logits of one token sequence, written as a safetensors
// file with one tensor "logits" [T, V] fp32 (for parity checks against other
// implementations).
#include <ATen/ATen.h>
#include <torch/torch.h>

#include "command.h"
#include "model_args.h"
#include "safetune/core/device.h"
#include "safetune/core/threads.h"
#include "safetune/io/tensor_io.h"
#include "safetune/model/load.h"
#include "safetune/model/lora.h"
#include "safetune/text/tokenizer.h"

namespace {

struct Opts : safetune::cli::ModelArgs {
  std::string ids, text, out;
  bool add_bos = false;
};

int run(const Opts& o) {
  using namespace safetune;
  set_compute_threads(0);
  if (o.ids.empty() == o.text.empty()) input_error("logits", "give exactly one of --ids and --text");
  auto loaded = cli::load_model_args(o);
  std::vector<int64_t> ids;
  if (!o.ids.empty()) {
    ids = cli::parse_id_list(o.ids, "--ids");
  } else {
    auto tok = text::load_tokenizer(o.model);
    for (int32_t id : tok->encode(o.text, o.add_bos)) ids.push_back(id);
    if (ids.empty()) input_error("--text", "encodes to no tokens");
  }
  cli::check_ids(ids, loaded.config.vocab_size, o.ids.empty() ? "--text" : "--ids");

  at::NoGradGuard no_grad;
  at::Tensor input = at::tensor(ids, at::kLong).unsqueeze(0);
  at::Tensor hidden = loaded.model->forward(input);
  at::Tensor logits = loaded.model->logits(hidden[0]).to(at::kCPU).to(at::kFloat).contiguous();
  io::save_tensors(o.out, {{"logits", logits}}, {{"format", "pt"}});
  return 0;
}

safetune::cli::Command cmd("logits", "write teacher-forced logits [T, V] (fp32) to a safetensors file",
                           [](CLI::App& sub) {
                             auto o = std::make_shared<Opts>();
                             safetune::cli::add_model_args(sub, *o);
                             sub.add_option("--ids", o->ids, "comma-separated token ids");
                             sub.add_option("--text", o->text, "text, encoded with the model's tokenizer");
                             sub.add_flag("--add-bos", o->add_bos, "prepend BOS when encoding --text");
                             sub.add_option("--out", o->out, "output .safetensors file")->required();
                             return [o]() { return run(*o); };
                           });

}  // namespace
