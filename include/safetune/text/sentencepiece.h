// SentencePiece .model files through Debian's libsentencepiece.
//
// libsentencepiece cannot be linked into a process that also loads LibTorch (their
// protobufs clash in static initialisation), so it lives in a small shim library,
// libsafetune_spm.so, opened with dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND). The shim
// is looked for beside the executable (and one directory up, for test binaries in a
// subdirectory of the build), then at $SAFETUNE_SPM_SHIM (a file or its directory).
#pragma once
#include <memory>
#include <string>

#include "safetune/text/tokenizer.h"

namespace safetune::text {

// Loads a SentencePiece .model file (InputError naming the file if it is not one).
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);

// Trains a SentencePiece model on a text file (one sentence per line), writing
// <model_prefix>.model and <model_prefix>.vocab. `model_type` is "bpe" or "unigram";
// byte fallback makes every UTF-8 byte encodable. `extra_args` are appended verbatim
// in sentencepiece's "--key=value" form.
void train_sentencepiece(const std::string& input_text_file, const std::string& model_prefix,
                         int vocab_size, const std::string& model_type = "bpe",
                         bool byte_fallback = true, const std::string& extra_args = "");

// Where the shim was found (loads it if needed); InputError when it cannot be found.
std::string sentencepiece_shim_path();

}  // namespace safetune::text
