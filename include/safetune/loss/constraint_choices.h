// The constraint's choices by name: which constraint (objective.constraint), where its
// reference comes from at each position (objective.reference_mix) and which response
// positions are constrained (objective.positions). The config parses the names once into
// these enums; the loss, the trainer and the metrics use the enums, and their names come
// back from here. Each constraint also has one descriptor (ConstraintDescriptor): what it
// needs and what it logs, which the config, the reference, the trainer, the bench and
// the demo read instead of naming kinds. No LibTorch: config parsing builds without it.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace safetune::loss {

// The constraint added to the task loss (constraints.h defines each).
enum class ConstraintKind { none, pact, kl_full, anchor, safety_mass };

// The reference (and the model) at each position of pact and safety_mass:
//  gated (PACT): the gate's c_t mixes the full-context and post-only references;
//  full:  c_t = 0, the full-context reference alone (what objective.gate.enabled = false
//         means; also the only choice without a post-only context, and then z_post need
//         not be computed);
//  post:  c_t = 1, the post-only reference alone (ablation: no mixing).
enum class ReferenceMix { gated, full, post };

// The response positions constrained: all, the first N (t < N), "probe" positions,
// where the full-context reference puts at least probe_tau of its probability on S, or
// "safety_start": every position of the examples whose first response token the
// reference gives at least probe_tau of its probability on S (the examples it would
// start with a safety token: its refusals), so a task the reference answers otherwise
// is left to the task loss.
enum class Positions { all, first_n, probe, safety_start };

// Whether a position selection reads the reference's mass on S.
inline bool needs_reference_mass(Positions p) { return p == Positions::probe || p == Positions::safety_start; }

// The names, in enum order: what the config, the metrics and the messages spell.
const std::vector<std::string>& names_of(ConstraintKind);
const std::vector<std::string>& names_of(ReferenceMix);
const std::vector<std::string>& names_of(Positions);

template <class E>
const std::string& name_of(E value) {
  return names_of(E{})[static_cast<size_t>(value)];
}

// The value named `name`, if any.
template <class E>
std::optional<E> parse_name(const std::string& name) {
  const std::vector<std::string>& names = names_of(E{});
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<E>(i);
  return std::nullopt;
}

// What a constraint needs from the run and what it reports: the one place that states
// each kind's rules (descriptor_of). The loss module's row operations (fused_objective.cpp)
// are the other half; adding a kind means a row of each.
struct ConstraintDescriptor {
  ConstraintKind kind = ConstraintKind::none;
  const char* summary = "";  // one line for --list-keys and messages
  // The safety tokens S (objective.tokens).
  bool needs_tokens = false;
  // The reference over the whole vocabulary at every position: its final hidden states
  // and lm_head weight (fused) or its logits (unfused). A cache cannot hold those.
  bool needs_whole_vocab = false;
  // The reference's full-vocabulary log-sum-exp at each position beside its S logits
  // (and the post-only context's, when that is mixed in): the absolute probabilities on S.
  bool needs_reference_lse = false;
  // objective.reference_mix and the gate apply: the post-only context can be mixed in.
  bool mixes_post_context = false;
  // objective.target (weighted | reference) applies: pact's q reweights by max(v, 0).
  bool uses_token_weights = false;
  // A reference cache (`safetune ref-cache`) can serve it.
  bool cacheable = false;
  double default_temperature = 2.0;                          // objective.temperature unless set
  ReferenceMix default_reference_mix = ReferenceMix::gated;  // objective.reference_mix unless set
  // The constraint's mean is over every response row given (as CE's is over its rows),
  // not over the constrained (valid) rows only.
  bool normalise_by_all_rows = false;
  // Detached terms logged beside the constraint, in this order (ObjectiveValues::terms).
  std::vector<std::string> metric_terms;
};

// The descriptor of `kind`; throws std::invalid_argument for a value outside the enum
// (the switch over the kinds is exhaustive: -Wswitch names a kind without a descriptor).
const ConstraintDescriptor& descriptor_of(ConstraintKind kind);

// Whether the reference is needed over the whole vocabulary (kl_full, anchor).
inline bool needs_whole_vocab(ConstraintKind k) { return descriptor_of(k).needs_whole_vocab; }

}  // namespace safetune::loss
