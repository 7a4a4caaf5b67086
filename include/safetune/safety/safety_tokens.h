// PACT's step 1: find the safety tokens of an aligned model by comparing it, on refusal
// examples, with a probe model that shares its vocabulary (the pre-alignment base).
//
// For each refusal (prompt x_i, refusal y_i) the first R_i = min(|y_i|, max_resp_len)
// response tokens are teacher-forced through both models: the aligned model A reads the
// prompt through its chat template (generation prompt on), the probe B through the plain
// "User: {x}\n\nAssistant: " format. The response is tokenised once and the same ids are
// appended to both contexts. With p_A,t = softmax(z_A,t / tau), p_B,t likewise:
//   d    = mean_i mean_t (p_A,t - p_B,t)                        (mode p_diff)
//     or   mean_i mean_t p_A,t * (log p_B,t - log p_A,t)         (mode pref_logratio)
//   pbar = mean_i mean_t p_A,t
//   S    = the topk largest entries of pbar; d is zeroed outside S
//   the non-zero entries of d are z-scored: (d - mean) / (std + 1e-6), std the unbiased
//        (n - 1) estimate, torch.Tensor.std's default
//   v    = d / (||d|| + 1e-6)
// The result is written to tokens.json: settings, the two models (paths and hashes), the
// vocabulary size, and per token of S (ordered by pbar, largest first): id, piece,
// weight v, p_ref pbar, diff (d before z-scoring).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "safetune/data/columns.h"

namespace safetune::text {
class Tokenizer;
}

namespace safetune::safety {

struct DiscoverOptions {
  int64_t topk = 50;
  int64_t max_resp_len = 64;
  std::string mode = "p_diff";  // p_diff | pref_logratio
  double temperature = 1.0;     // tau
  int64_t limit = 0;            // use the first K refusal records; 0 = all
  int64_t batch_size = 8;       // examples per forward pass
  std::string chat_template = "auto";  // the aligned model's template ("auto" = detect)
  std::string device = "cpu";          // cpu | cuda[:N]
  data::ColumnMap columns;             // field -> column of the refusal records; empty = by name
};

// One token of S.
struct SafetyToken {
  int64_t id = 0;
  std::string piece;
  double weight = 0;  // v_j (may be negative; the constraint uses max(v_j, 0))
  double p_ref = 0;   // pbar_j
  double diff = 0;    // d_j before z-scoring
};

struct SafetyTokens {
  DiscoverOptions settings;
  std::string aligned_path, probe_path;
  std::string aligned_hash, probe_hash;  // model_hash() of each directory
  int64_t vocab_size = 0;                // the models' vocabulary (logit columns)
  int64_t num_examples = 0;              // refusal examples used
  int64_t num_positions = 0;             // response positions seen, over all examples
  std::vector<SafetyToken> tokens;       // S, ordered by p_ref descending

  // Column ids of S as an int64 CPU tensor [|S|], and the constraint weights
  // w = max(v, 0) as an fp32 CPU tensor [|S|], in the same order.
  at::Tensor ids() const;
  at::Tensor weights() const;
};

// Sums the per-example means of step 1 one example at a time (so the full [V] vectors
// are the only state), then finishes the aggregation. Inputs are logits of the response
// positions of one example: [R, V] for each model.
class DirectionAccumulator {
 public:
  DirectionAccumulator(int64_t vocab_size, std::string mode, double temperature);
  void add(const at::Tensor& logits_aligned, const at::Tensor& logits_probe);
  int64_t examples() const { return examples_; }
  int64_t positions() const { return positions_; }
  // d, pbar (means over examples), then S, z-scoring and v. Tokens carry no pieces.
  std::vector<SafetyToken> finish(int64_t topk) const;
  // The raw means (fp64 [V]) for checking.
  at::Tensor mean_diff() const;
  at::Tensor mean_prob() const;

 private:
  int64_t vocab_, examples_ = 0, positions_ = 0;
  std::string mode_;
  double temperature_;
  at::Tensor sum_diff_, sum_prob_;  // fp64 [V]: sums over examples of per-example means
};

// Runs step 1 end to end: loads both models and tokenizers from their directories, checks
// that the vocabularies are identical (size and every piece) and that both tokenizers
// give the same ids for every response, reads {input, output} refusal records (JSON, JSONL,
// CSV or TSV; options.columns maps other column names).
// `progress(done, total)` is called after each batch. InputError for bad input.
SafetyTokens discover_safety_tokens(const std::string& aligned_dir, const std::string& probe_dir,
                                    const std::string& refusals_path, const DiscoverOptions& options,
                                    const std::function<void(int64_t, int64_t)>& progress = {});

// sha256 (hex) of a model directory's identity: config.json followed by
// model.safetensors.index.json when the checkpoint is sharded, else model.safetensors.
std::string model_hash(const std::string& model_dir);

// tokens.json <-> SafetyTokens. Writing is atomic. Reading checks the structure
// (InputError naming the file and field).
std::string to_json(const SafetyTokens& t);
void write_safety_tokens(const std::string& path, const SafetyTokens& t);
SafetyTokens read_safety_tokens(const std::string& path);

// Checks that tokens.json fits the model it will constrain: the same vocabulary size
// ("tokens.json was made for vocabulary of N, model has M"), every id in range, the same
// piece for every id when a tokenizer is given, and, when `model_dir` is not empty, the
// aligned model's hash. InputError naming `path` otherwise.
void validate_safety_tokens(const SafetyTokens& t, const std::string& path, int64_t model_vocab,
                            const text::Tokenizer* tokenizer = nullptr, const std::string& model_dir = "");

// A piece with control and non-ASCII-printable bytes escaped (\n, \t, \xNN), for tables.
std::string escape_piece(const std::string& piece);

}  // namespace safetune::safety
