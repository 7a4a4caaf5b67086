// Names of the constraint's choices (see constraint_choices.h).
#include "safetune/loss/constraint_choices.h"

#include <stdexcept>

namespace safetune::loss {

const std::vector<std::string>& names_of(ConstraintKind) {
  static const std::vector<std::string> names = {"none", "pact", "kl_full", "anchor", "safety_mass"};
  return names;
}

const std::vector<std::string>& names_of(ReferenceMix) {
  static const std::vector<std::string> names = {"gated", "full", "post"};
  return names;
}

const std::vector<std::string>& names_of(Positions) {
  static const std::vector<std::string> names = {"all", "first_n", "probe", "safety_start"};
  return names;
}

namespace {

ConstraintDescriptor make_descriptor(ConstraintKind kind) {
  ConstraintDescriptor d;
  d.kind = kind;
  switch (kind) {  // no default: a kind without a case is a compiler warning (-Wswitch)
    case ConstraintKind::none:
      d.summary = "no constraint: the task loss alone";
      return d;
    case ConstraintKind::pact:
      d.summary = "PACT: KL on the safety tokens' distribution inside S, against a gated full/post-only reference";
      d.needs_tokens = true;
      d.mixes_post_context = true;
      d.uses_token_weights = true;
      d.cacheable = true;
      d.metric_terms = {"gate"};
      return d;
    case ConstraintKind::kl_full:
      d.summary = "KL(reference || model) over the whole vocabulary";
      d.needs_whole_vocab = true;
      return d;
    case ConstraintKind::anchor:
      d.summary = "squared differences of the safety tokens' log-probabilities (whole-vocabulary softmax)";
      d.needs_tokens = true;
      d.needs_whole_vocab = true;  // works at temperature 1 whatever objective.temperature says
      return d;
    case ConstraintKind::safety_mass:
      d.summary = "KL over |S|+1 buckets: each safety token's absolute probability plus the rest of the vocabulary";
      d.needs_tokens = true;
      d.needs_reference_lse = true;
      d.mixes_post_context = true;
      d.cacheable = true;
      d.default_temperature = 1.0;
      d.default_reference_mix = ReferenceMix::full;
      d.normalise_by_all_rows = true;
      d.metric_terms = {"gate", "mass_term", "shape_term"};
      return d;
  }
  throw std::invalid_argument("unknown constraint kind " + std::to_string(static_cast<int>(kind)));
}

}  // namespace

const ConstraintDescriptor& descriptor_of(ConstraintKind kind) {
  static const std::vector<ConstraintDescriptor> table = [] {
    std::vector<ConstraintDescriptor> t;
    for (size_t i = 0; i < names_of(ConstraintKind{}).size(); ++i) t.push_back(make_descriptor(static_cast<ConstraintKind>(i)));
    return t;
  }();
  const auto i = static_cast<size_t>(kind);
  if (i >= table.size()) throw std::invalid_argument("unknown constraint kind " + std::to_string(i));
  return table[i];
}

}  // namespace safetune::loss
