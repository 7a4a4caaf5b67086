// The constraint's choices by name: which constraint (objective.constraint), where pact's
// reference comes from at each position (objective.reference_mix) and which response
// positions are constrained (objective.positions). The config parses the names once into
// these enums; the loss, the trainer and the metrics use the enums, and their names come
// back from here. No LibTorch: config parsing builds without it.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace safetune::loss {

// The constraint added to the task loss (constraints.h defines each).
enum class ConstraintKind { none, pact, kl_full, anchor };

// pact's reference at each position:
//  gated (PACT): the gate's c_t mixes the full-context and post-only references;
//  full:  c_t = 0, the full-context reference alone (what objective.gate.enabled = false
//         means; also the only choice without a post-only context, and then z_post need
//         not be computed);
//  post:  c_t = 1, the post-only reference alone (ablation: no mixing).
enum class ReferenceMix { gated, full, post };

// The response positions constrained: all, the first N (t < N), or "probe" positions,
// where the full-context reference puts at least probe_tau of its probability on S.
enum class Positions { all, first_n, probe };

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

// kl_full and anchor compare with the reference over the whole vocabulary (a reference
// cache, which holds the safety-token columns only, cannot serve them).
inline bool needs_whole_vocab(ConstraintKind k) { return k == ConstraintKind::kl_full || k == ConstraintKind::anchor; }

}  // namespace safetune::loss
