// safetune tokenize: text to ids and pieces with a model directory's tokenizer, or the
// token counts of a dataset (.jsonl / .json records, .csv / .tsv rows).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "safetune/core/error.h"
#include "safetune/core/fs.h"
#include "safetune/core/json.h"
#include "safetune/data/csv.h"
#include "safetune/text/tokenizer.h"
#include "safetune/text/unicode.h"

namespace {

using json = nlohmann::json;
using safetune::input_error;

struct Opts {
  std::string model, text, file, batch, bench;
  bool json = false, bos = false;
};

// 1-based line of a byte offset.
size_t line_of(const std::string& s, size_t offset) {
  return 1 + size_t(std::count(s.begin(), s.begin() + std::min(offset, s.size()), '\n'));
}

void check_utf8(const std::string& s, const std::string& where) {
  size_t bad = safetune::text::unicode::find_invalid_utf8(s);
  if (bad != std::string::npos) input_error(where + ":" + std::to_string(line_of(s, bad)), "invalid UTF-8");
}

// All string values of a record, in order, joined by newlines: what the model reads of it.
void collect_strings(const json& j, std::string& out) {
  if (j.is_string()) {
    if (!out.empty()) out += '\n';
    out += j.get_ref<const std::string&>();
  } else if (j.is_array() || j.is_object()) {
    for (const auto& v : j) collect_strings(v, out);
  }
}

void print_ids(const safetune::text::Tokenizer& tok, const std::vector<int32_t>& ids, bool as_json) {
  if (as_json) {
    std::printf("%s\n", json{{"ids", ids}}.dump().c_str());
    return;
  }
  std::string line = "ids (" + std::to_string(ids.size()) + "):";
  for (int32_t id : ids) line += " " + std::to_string(id);
  json pieces = json::array();
  for (int32_t id : ids) pieces.push_back(safetune::text::unicode::to_valid_utf8(tok.id_to_piece(id)));
  std::printf("%s\npieces: %s\n", line.c_str(), pieces.dump().c_str());
}

int count_dataset(const safetune::text::Tokenizer& tok, const std::string& path, const std::string& data, bool as_json) {
  std::vector<std::pair<std::string, size_t>> records;  // text, line
  bool jsonl = path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  if (const char sep = safetune::data::csv_separator_for(path)) {
    // A CSV / TSV table: every cell of a row, as the JSON records' string values.
    for (const auto& row : safetune::data::parse_csv(data, path, sep).rows) {
      std::string text;
      for (const std::string& cell : row.cells) text += (text.empty() ? "" : "\n") + cell;
      records.emplace_back(std::move(text), row.line);
    }
  } else if (jsonl) {
    size_t start = 0, line = 0;
    while (start < data.size()) {
      size_t end = data.find('\n', start);
      if (end == std::string::npos) end = data.size();
      ++line;
      std::string_view l(data.data() + start, end - start);
      start = end + 1;
      if (l.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      const json rec = safetune::parse_json(l, path + ":" + std::to_string(line));
      std::string text;
      collect_strings(rec, text);
      records.emplace_back(std::move(text), line);
    }
  } else {
    const json arr = safetune::parse_json(data, path);
    if (!arr.is_array()) input_error(path, "expected a JSON array of records");
    for (size_t i = 0; i < arr.size(); ++i) {
      std::string text;
      collect_strings(arr[i], text);
      records.emplace_back(std::move(text), i);
    }
  }
  if (records.empty()) input_error(path, "no records");
  size_t total = 0, max = 0;
  for (const auto& [text, line] : records) {
    size_t n = tok.encode(text).size();
    total += n;
    max = std::max(max, n);
  }
  double mean = double(total) / double(records.size());
  if (as_json) {
    std::printf("%s\n", json{{"records", records.size()}, {"tokens", total}, {"mean", mean}, {"max", max}}.dump().c_str());
  } else {
    std::printf("records: %zu\ntokens: %zu\nmean tokens per record: %.1f\nmax tokens per record: %zu\n",
                records.size(), total, mean, max);
  }
  return 0;
}

int encode_batch(const safetune::text::Tokenizer& tok, const std::string& path, bool bos) {
  std::string data = safetune::read_file(path);
  const json arr = safetune::parse_json(data, path);
  if (!arr.is_array()) input_error(path, "expected a JSON array of strings");
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_string()) input_error(path + ": [" + std::to_string(i) + "]", "not a string");
    const std::string& t = arr[i].get_ref<const std::string&>();
    auto ids = tok.encode(t, bos);
    std::printf("%s\n", json{{"ids", ids}, {"decoded", tok.decode(ids)}}.dump().c_str());
  }
  return 0;
}

// Encode throughput: the file line by line (as a data pipeline sees records), timing
// only the encoding.
int bench_file(const safetune::text::Tokenizer& tok, const std::string& path) {
  std::string data = safetune::read_file(path);
  check_utf8(data, path);
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= data.size()) {
    size_t end = data.find('\n', start);
    if (end == std::string::npos) end = data.size();
    lines.emplace_back(data.data() + start, end - start);
    start = end + 1;
  }
  size_t tokens = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (std::string_view l : lines) tokens += tok.encode(l).size();
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s\n", json{{"bytes", data.size()}, {"tokens", tokens}, {"seconds", sec},
                           {"mb_per_s", double(data.size()) / 1e6 / sec}}.dump().c_str());
  return 0;
}

safetune::cli::Command cmd("tokenize", "text to ids and pieces; token counts of a dataset", [](CLI::App& sub) {
  auto o = std::make_shared<Opts>();
  sub.add_option("--model", o->model, "model directory (tokenizer.json or tokenizer.model)")->required();
  auto* text = sub.add_option("--text", o->text, "text to tokenize");
  auto* file = sub.add_option("--file", o->file, "file to tokenize (.jsonl/.json/.csv/.tsv: token counts per record)");
  text->excludes(file);
  sub.add_flag("--json", o->json, "print {\"ids\": [...]} (or the counts) as JSON");
  sub.add_flag("--bos", o->bos, "prepend the BOS token when the tokenizer has one");
  auto* batch = sub.add_option("--batch", o->batch,
                                "JSON array of strings: one line {\"ids\": [...], \"decoded\": ...} per string");
  auto* bench = sub.add_option("--bench", o->bench, "time encoding FILE line by line; print MB/s as JSON");
  batch->excludes(text)->excludes(file);
  bench->excludes(text)->excludes(file)->excludes(batch);
  return [o, text, file, batch, bench]() -> int {
    if (!*text && !*file && !*batch && !*bench) input_error("tokenize", "give --text, --file, --batch or --bench");
    auto tok = safetune::text::load_tokenizer(o->model);
    if (*batch) return encode_batch(*tok, o->batch, o->bos);
    if (*bench) return bench_file(*tok, o->bench);
    if (*text) {
      check_utf8(o->text, "--text");
      print_ids(*tok, tok->encode(o->text, o->bos), o->json);
      return 0;
    }
    std::string data = safetune::read_file(o->file);
    check_utf8(data, o->file);
    auto ends_with = [&](const char* suffix) {
      std::string s(suffix);
      return o->file.size() >= s.size() && o->file.compare(o->file.size() - s.size(), s.size(), s) == 0;
    };
    if (ends_with(".jsonl") || ends_with(".json") || safetune::data::csv_separator_for(o->file))
      return count_dataset(*tok, o->file, data, o->json);
    print_ids(*tok, tok->encode(data, o->bos), o->json);
    return 0;
  };
});

}  // namespace
