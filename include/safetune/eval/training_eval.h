// The suite's part of an evaluation during training (train/evaluation.h): the trainer
// cannot reach the eval module (it comes after train), so the caller makes this from the
// run config and hands it over (train::TrainOptions::suite).
//
// At each evaluation the model being trained answers every prompt of train.eval_suite
// exactly as `safetune eval --suite S --batch-size train.eval_batch_size --max-new-tokens
// train.eval_max_new_tokens` answers it (greedy, the keyword judge, the same batches), so
// the refusal and accuracy numbers are those `safetune eval` gives for a checkpoint of the
// same step. Besides, on each safety set, the first-token refusal margin (eval/margin.h)
// between train.eval_refusal_start and train.eval_compliance_start.
//
// Metrics: refusal/<set>, asr/<set>, margin/<set> per safety set, accuracy/<set> per
// utility set; refusal, asr and margin over all safety prompts, utility over all utility
// prompts (each prompt counts once, whatever its set).
#pragma once
#include <memory>

#include "safetune/train/config.h"
#include "safetune/train/evaluation.h"

namespace safetune::eval {

// Loads train.eval_suite (InputError naming train.eval_suite when it is missing, and the
// suite's own errors), and checks that it yields the metrics train.keep_best and
// train.early_stop name (a safety set for refusal, asr and margin; a utility set for utility).
std::shared_ptr<train::SuiteEvaluation> suite_evaluation(const train::TrainConfig& t);

}  // namespace safetune::eval
