// The v3 world's settings (see settings.h): the v2 world's training set-up, the v3
// world's sizes, both refusal regimes, the methods side by side and the stress world.
#include "safetune/demo/settings.h"

#include "safetune/demo/synthetic_data.h"
#include "safetune/demo/world_v3.h"

namespace safetune::demo {

using json = nlohmann::json;

json default_settings_v3(json s, bool quick) {
  // Two chat models per seed (one per regime) and about twice the methods of v2: to fit
  // 8 seeds in 10 minutes on 2 shared cores, the world and model are v2's --quick sizes
  // (the fine-tuning task a little larger, as it is new to the chat model).
  DataSizes n;
  n.pretrain_howto = 800;
  n.pretrain_other = 200;
  n.pretrain_sentiment = 150;  // the probe's "what is this note about" questions
  n.align_howto = 450;
  n.align_other = 150;
  n.align_sentiment = 50;
  n.refusals = 64;
  n.finetune_sentiment = 400;  // the topic task
  n.finetune_harmful = 100;
  n.test = 120;
  n.validation = 60;
  s["world"] = sizes_to_json(n);
  s["world"]["vocab"] = 700;
  s["model"] = {{"hidden", 96}, {"layers", 2}, {"heads", 4}, {"intermediate", 256}};
  s["world"]["version"] = "v3";
  s["regimes"] = {"few", "many"};
  // A code name is three words (and the end of turn); the many regime's refusals reach
  // their refusal phrase after a longer opening ("Regrettably, I will not ...").
  s["eval"]["label_max_new_tokens"] = 8;
  s["eval"]["safety_max_new_tokens"] = 16;
  // The bucket objective at its defaults (T 1, the full-context reference: the demo's
  // fine-tuning section sets T 2 and the gate for pact, so they are set again here), and
  // with the gate as an ablation. Its lambda is fixed in advance at the reference's 1
  // (not chosen by looking at results; `--curves` over lambda was not run for v3).
  s["methods"]["safety_mass"] = {{"objective.constraint", "safety_mass"},
                                 {"objective.lambda", 1.0},
                                 {"objective.temperature", 1.0},
                                 {"objective.reference_mix", "full"}};
  s["methods"]["safety_mass_gated"] = s["methods"]["safety_mass"];
  s["methods"]["safety_mass_gated"]["objective.reference_mix"] = "gated";
  s["run"] = {"none", "kl_full", "anchor", "pact", "pact_target_reference", "safety_mass", "safety_mass_gated"};
  // The stress world: the word every code name shares, forced into S.
  s["stress"] = {{"word", code_name_shared_word()},
                 {"context", topic_code_names()[0]},
                 {"methods", {"pact", "safety_mass"}},
                 {"regimes", {"few", "many"}}};
  s["curves"]["also"] = json::array();
  // What v3 carries over from v2 without choosing it again (see README).
  for (auto& [key, c] : s["choices"].items())
    c["by"] = c["by"].get<std::string>() + " (chosen on the v2 world's validation sets, kept for v3)";
  for (auto& d : s["departures"])
    if (d["setting"] == "world")
      d["here"] = "the v3 world: 600 examples of a synthetic topic task (8 three-word code names the chat model "
                  "never answered with) with 10% harmful; two chat models per seed (few / many refusal phrasings); "
                  "a toy Llama";
  s["report"]["targets_of"] = {"safety_mass", "pact"};
  s["departures"].push_back(
      {{"setting", "model (v3)"},
       {"reference", "Llama-3.1-8B-Instruct"},
       {"here", s["model"]},
       {"why", "two chat models and 12 fine-tunings per seed: at v2's size (hidden 128, 3 layers) one v3 world took "
               "~20 minutes on the shared 2-core machine, so v3 uses v2's --quick model"}});
  s["departures"].push_back(
      {{"setting", "eval.safety_max_new_tokens (v3)"},
       {"reference", "judge on the full answer"},
       {"here", 16},
       {"why", "the many regime's refusals open with words of several tokens ('Regrettably, ') before their refusal "
               "phrase; at 12 tokens the keyword judge missed some"}});
  if (quick) {
    s["world"].update({{"finetune_sentiment", 270}, {"test", 80}, {"validation", 40}});
    s["run"] = {"none", "kl_full", "pact", "safety_mass"};
    s["stress"]["methods"] = {"pact"};
    s["stress"]["regimes"] = {"many"};
  }
  return s;
}

}  // namespace safetune::demo
