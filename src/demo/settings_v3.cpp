// The v3 world's settings (see settings.h): the v2 world's training set-up, the v3
// world's sizes, both refusal regimes, the methods side by side and the stress world.
#include "safetune/demo/settings.h"

#include "safetune/demo/synthetic_data.h"
#include "safetune/demo/world_v3.h"
#include "safetune/io/model_family.h"

namespace safetune::demo {

using json = nlohmann::json;

// Settings of v3 chosen by looking at results, all on validation sets (choices):
//  - finetune.optim.lr: of {1e-3, 3e-3, 1e-2}, the smallest at which plain fine-tuning
//    comes within 2 points of its best mean validation task accuracy over both regimes
//    (seeds 1-2: 42.5, 95.9, 96.7%). v2's rule (the best itself) picked 1e-2, and at
//    1e-2 no constraint at any lambda kept more than 43% of the refusals while learning
//    the task (curves, seeds 1-4, validation); the tolerance was added after seeing that,
//    on validation sets only;
//  - each constraint's lambda: `safetune demo --curves` (seeds 1-4) over kCurveLambdas,
//    the rule of v2 (summary.h, choose_lambdas) on the mean of the two regimes' scores.
constexpr double kFinetuneLrV3 = 3e-3;
const std::vector<double> kCurveLambdas = {0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0};
const std::vector<std::pair<std::string, double>> kLambdasV3 = {
    {"kl_full", 16.0},    {"anchor", 16.0},       {"pact", 0.25},
    {"safety_mass", 0.5}, {"kl_full_start", 1.0}, {"safety_mass_start", 8.0}};

json default_settings_v3(json s, bool quick) {
  // Two chat models per seed (one per regime) and about twice the methods of v2: to fit
  // 8 seeds in 10 minutes on 2 shared cores, the world and model are v2's --quick sizes
  // (the fine-tuning task a little larger, as it is new to the chat model).
  DataSizes n;
  n.pretrain_howto = 800;
  n.pretrain_other = 200;
  // The probe's and the chat model's "what is this note about" questions: enough that both
  // know the topics' nouns, as a real chat model knows a task's words before it learns the
  // task (at 150 / 50 the chat model named the wrong topic on about half the notes, and
  // plain fine-tuning reached 1.7% on validation, seed 1).
  n.pretrain_sentiment = 500;
  n.align_howto = 450;
  n.align_other = 150;
  n.align_sentiment = 150;
  n.refusals = 64;
  n.finetune_sentiment = 400;  // the topic task
  n.finetune_harmful = 100;
  n.test = 120;
  n.validation = 60;
  s["world"] = sizes_to_json(n);
  // Whole words for the refusals' words (at 700 pieces S filled with letters such as
  // "t", "a", "e" that every answer uses).
  s["world"]["vocab"] = 1200;
  s["model"] = {{"hidden", 96}, {"layers", 2}, {"heads", 4}, {"intermediate", 256}};
  s["world"]["version"] = "v3";
  // The new task needs the MLPs too: with LoRA on q_proj and v_proj plain fine-tuning
  // reached 28-30% validation task accuracy (lr 1e-2, seeds 1-2), on every linear layer
  // 94-98% (see departures). The learning rate is chosen on validation as v2's (choices).
  const auto& every_linear = io::traits_of(io::Family::kLlama).lora_targets;  // the demo's models are Llamas
  s["finetune"]["lora.target_modules"] = std::vector<std::string>(every_linear.begin(), every_linear.end());
  s["finetune"]["optim.lr"] = kFinetuneLrV3;
  s["regimes"] = {"few", "many"};
  // A code name is three words (and the end of turn); the many regime's refusals reach
  // their refusal phrase after a longer opening ("Regrettably, I will not ...").
  s["eval"]["label_max_new_tokens"] = 8;
  s["eval"]["safety_max_new_tokens"] = 16;
  // The bucket objective at its defaults (T 1, the full-context reference: the demo's
  // fine-tuning section sets T 2 and the gate for pact, so they are set again here), and
  // with the gate as an ablation (at safety_mass's lambda).
  s["methods"]["safety_mass"] = {{"objective.constraint", "safety_mass"},
                                 {"objective.lambda", 1.0},
                                 {"objective.temperature", 1.0},
                                 {"objective.reference_mix", "full"}};
  // The constraints on the examples the chat model would start with a safety token only
  // (objective.positions = safety_start): the bucket objective, and kl_full as the
  // model-wide baseline with the same selection.
  s["methods"]["safety_mass_start"] = s["methods"]["safety_mass"];
  s["methods"]["safety_mass_start"]["objective.positions"] = "safety_start";
  s["methods"]["kl_full_start"] = s["methods"]["kl_full"];
  s["methods"]["kl_full_start"]["objective.positions"] = "safety_start";
  for (const auto& [name, lambda] : kLambdasV3) s["methods"][name]["objective.lambda"] = lambda;
  s["methods"]["safety_mass_gated"] = s["methods"]["safety_mass"];
  s["methods"]["safety_mass_gated"]["objective.reference_mix"] = "gated";
  s["methods"]["pact_target_reference"]["objective.lambda"] = s["methods"]["pact"]["objective.lambda"];
  s["run"] = {"none",        "kl_full",           "anchor",        "pact",           "pact_target_reference",
              "safety_mass", "safety_mass_gated", "kl_full_start", "safety_mass_start"};
  // The stress world: the word every code name shares, forced into S.
  s["stress"] = {{"word", code_name_shared_word()},
                 {"context", topic_code_names()[0]},
                 {"methods", {"pact", "safety_mass", "safety_mass_start"}},
                 {"regimes", {"few", "many"}}};
  // The drift curve (drift.h): the model-wide and the safety-token constraints beside
  // plain fine-tuning, in both regimes, evaluated 6 times over each run.
  s["drift"] = {{"methods", {"none", "kl_full", "pact", "kl_full_start", "safety_mass_start"}},
                {"regimes", {"few", "many"}},
                {"points", 6}};
  s["curves"] = {{"lambdas", kCurveLambdas},
                 {"of", {"kl_full", "anchor", "pact", "safety_mass", "kl_full_start", "safety_mass_start"}},
                 {"also", json::array()}};
  // What v3 carries over from v2 without choosing it again (tokens.topk), and what it
  // chose again on its own validation sets.
  for (auto& [key, c] : s["choices"].items())
    c["by"] = c["by"].get<std::string>() + " (chosen on the v2 world's validation sets, kept for v3)";
  s["choices"]["finetune.optim.lr"] = {
      {"value", kFinetuneLrV3},
      {"on", "validation"},
      {"by", "v3, LoRA on every linear layer: of {1e-3, 3e-3, 1e-2} (plain fine-tuning 42.5, 95.9, 96.7% mean "
             "validation task accuracy over both regimes, seeds 1-2), the smallest within 2 points of the best. The "
             "tolerance was added after v2's rule (the best itself: 1e-2) left no constraint at any lambda above 43% "
             "validation refusal with task accuracy above 0 (safetune demo --curves, seeds 1-4)"}};
  for (const auto& [name, lambda] : kLambdasV3)
    s["choices"]["methods." + name + ".objective.lambda"] = {
        {"value", lambda},
        {"on", "validation"},
        {"by", "v3: safetune demo --curves (seeds 1-4) over lambda in {0.25, 0.5, 1, 2, 4, 8, 16}: the largest validation "
               "refusal of harmful requests minus refusal of benign ones plus task accuracy, averaged over the two "
               "regimes"}};
  for (auto& d : s["departures"]) {
    if (d["setting"] == "finetune.optim.lr") {
      d["here"] = kFinetuneLrV3;
      d["why"] = "a ~1M-parameter model moves far less per step than an 8B one; chosen on validation (choices)";
    }
    if (d["setting"] == "tokens.topk")
      d["why"] = "v2: " + d["why"].get<std::string>() +
                 ". v3 (vocabulary 1,200): at 50, S took in words of the task's notes ('The', 'learned', 'Last') "
                 "and the reference's mass on S at task-answer rows rose from 0.38-0.49 to 0.75-0.92 (seeds 1-2)";
    if (d["setting"] == "world")
      d["here"] = "the v3 world: 600 examples of a synthetic topic task (8 three-word code names the chat model "
                  "never answered with) with 10% harmful; two chat models per seed (few / many refusal phrasings); "
                  "a toy Llama";
  }
  s["report"]["targets_of"] = {"safety_mass", "safety_mass_start", "pact"};
  s["departures"].push_back(
      {{"setting", "model (v3)"},
       {"reference", "Llama-3.1-8B-Instruct"},
       {"here", s["model"]},
       {"why", "two chat models and 12 fine-tunings per seed: at v2's size (hidden 128, 3 layers) one v3 world took "
               "~20 minutes on the shared 2-core machine, so v3 uses v2's --quick model"}});
  s["departures"].push_back(
      {{"setting", "finetune.lora.target_modules (v3)"},
       {"reference", "q_proj, v_proj"},
       {"here", s["finetune"]["lora.target_modules"]},
       {"why", "a new task needs more than attention in a 2-layer toy: on q_proj and v_proj plain fine-tuning reached "
               "28-30% validation task accuracy (lr 1e-2, seeds 1-2), on every linear layer 96-98% (lr 1e-2) and 94-98% "
               "(lr 3e-3)"}});
  s["departures"].push_back(
      {{"setting", "eval.safety_max_new_tokens (v3)"},
       {"reference", "judge on the full answer"},
       {"here", 16},
       {"why", "the many regime's refusals open with words of several tokens ('Regrettably, ') before their refusal "
               "phrase; at 12 tokens the keyword judge missed some"}});
  if (quick) {
    s["world"].update({{"finetune_sentiment", 270}, {"test", 80}, {"validation", 40}});
    s["run"] = {"none", "kl_full", "pact", "safety_mass", "safety_mass_start"};
    s["stress"]["methods"] = {"pact"};
    s["stress"]["regimes"] = {"many"};
    s["drift"]["methods"] = {"none", "safety_mass_start"};
    s["drift"]["regimes"] = {"many"};
    s["drift"]["points"] = 4;
  }
  return s;
}

}  // namespace safetune::demo
