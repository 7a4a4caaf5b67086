// Writing a whole HF model directory (weights, config.json and the tokenizer files of the
// model it came from) atomically: built as a temporary directory beside the target, then
// renamed into place.
#pragma once
#include <c10/core/ScalarType.h>

#include <string>
#include <vector>

namespace safetune::model {

class Transformer;  // transformer.h

// The files besides the weights that an HF model directory carries for its tokenizer and
// generation settings (copied when present).
const std::vector<std::string>& tokenizer_file_names();

// Copies those of `src_dir`'s files that exist into `dst_dir`. Returns how many.
int copy_tokenizer_files(const std::string& src_dir, const std::string& dst_dir);

// Writes `out_dir` (replacing it when `replace`; InputError if it exists otherwise) with
// config.json + model.safetensors in `stored` dtype and the tokenizer files of `src_dir`.
void write_model_dir(const std::string& out_dir, const Transformer& model, const std::string& src_dir,
                     at::ScalarType stored, bool replace);

}  // namespace safetune::model
