// A continuous measure of refusal that greedy decoding hides: at the first response
// position of a prompt (teacher-forced, chat template with the generation prompt), the
// log-probability of the refusal's first token minus that of the compliance's first
// token. Positive: the model leans to refusing; its mean over a set moves smoothly with
// training where the refusal rate jumps.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "safetune/text/chat_template.h"
#include "safetune/text/tokenizer.h"

namespace safetune::model {
class Transformer;
}

namespace safetune::eval {

// One margin per prompt (in order): log p(first token of `refusal`) - log p(first token
// of `compliance`), each response tokenized after the prompt as training does. With
// `owns`, only the batches it accepts (batch b: prompts b x batch_size onwards) are
// computed; the others' margins are NaN.
std::vector<double> first_token_margins(model::Transformer& model, const text::Tokenizer& tok,
                                        const text::ChatTemplate& tmpl, const std::vector<std::string>& prompts,
                                        const std::string& refusal, const std::string& compliance,
                                        int64_t batch_size = 64,
                                        const std::function<bool(int64_t batch)>& owns = nullptr);

}  // namespace safetune::eval
