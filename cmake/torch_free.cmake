# The library sources that use no LibTorch: the parsers of untrusted files and what they
# need. The fuzz targets (tests/fuzz, clang, no LibTorch) build exactly these, and the main
# build compiles them without the precompiled torch header, so that a missing include
# shows in both. Paths are relative to the source root.
set(SAFETUNE_TORCH_FREE_SOURCES
  src/core/error.cpp src/core/fs.cpp src/core/json.cpp src/core/json_depth.cpp src/core/device_name.cpp
  src/io/safetensors.cpp src/io/hf_config.cpp src/io/model_family.cpp
  src/data/records.cpp src/data/csv.cpp src/data/columns.cpp
  src/text/bpe_tokenizer.cpp src/text/unicode.cpp src/text/unicode_tables.cpp
  src/loss/constraint_choices.cpp
  src/train/config.cpp src/train/eval_rules.cpp)
