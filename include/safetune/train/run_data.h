// What a training run reads besides the model: its records (data.train, optionally mixed
// with data.harmful) and its chat template. Shared by the trainer and `safetune ref-cache`,
// which must see exactly the same examples in the same order.
#pragma once
#include <vector>

#include "safetune/data/records.h"
#include "safetune/text/chat_template.h"
#include "safetune/train/config.h"

namespace safetune::train {

// The run's records: all of data.train, or data.num_examples of them with a share
// data.harmful_fraction drawn from data.harmful. The draw depends only on data.seed.
std::vector<data::Record> select_records(const DataConfig& d);

// data.eval's records (read with data.columns), all of them in file order; none when
// data.eval is empty. InputError naming data.eval for a missing or empty file.
std::vector<data::Record> held_out_records(const DataConfig& d);

// model.chat_template: empty = the model's own (detected), a family name, or a file
// holding a template whose family is then detected from its markers.
text::ChatTemplate chat_template_for(const ModelConfig& m);

}  // namespace safetune::train
