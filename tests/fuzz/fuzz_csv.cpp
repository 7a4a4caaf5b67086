// libFuzzer target: a CSV or TSV dataset from a stranger.
//
// The first byte picks how the rest is read: bit 0 a TSV instead of a CSV, bit 1 through
// the column mapping instruction=goal,output=target (AdvBench's layout), bit 2 as prompts
// (response optional) instead of training records. The table must be rectangular with
// rows in line order, and the records (or an InputError) as the JSONL target demands.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "safetune/core/error.h"
#include "safetune/data/csv.h"
#include "safetune/data/records.h"

namespace {

[[noreturn]] void fail(const char* what, size_t line) {
  std::fprintf(stderr, "%s (line %zu)\n", what, line);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool tsv = mode & 1, mapped = mode & 2, prompts = mode & 4;
  const std::string name = tsv ? "fuzz.tsv" : "fuzz.csv";

  try {
    const auto t = safetune::data::parse_csv(text, name, tsv ? '\t' : ',');
    size_t last = t.header_line;
    for (const auto& row : t.rows) {
      if (row.cells.size() != t.header.size()) fail("accepted a ragged row", row.line);
      if (row.line <= last) fail("rows out of line order", row.line);
      last = row.line;
    }
  } catch (const safetune::InputError&) {
  }

  safetune::data::ColumnMap columns;
  if (mapped) columns = {{"instruction", "goal"}, {"output", "target"}};
  try {
    const auto records = prompts ? safetune::data::parse_prompt_records(text, name, columns)
                                 : safetune::data::parse_records(text, name, columns);
    for (const auto& r : records) {
      if (r.prompt.empty() || r.prompt.back().role != "user" || r.where.empty()) fail("a record without a user prompt", 0);
      if (!prompts && !r.has_response) fail("a training record without a response", 0);
      (void)r.extra.dump();
    }
  } catch (const safetune::InputError&) {
    // A clean rejection.
  }
  return 0;
}
