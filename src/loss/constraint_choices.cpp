// Names of the constraint's choices (see constraint_choices.h).
#include "safetune/loss/constraint_choices.h"

namespace safetune::loss {

const std::vector<std::string>& names_of(ConstraintKind) {
  static const std::vector<std::string> names = {"none", "pact", "kl_full", "anchor"};
  return names;
}

const std::vector<std::string>& names_of(ReferenceMix) {
  static const std::vector<std::string> names = {"gated", "full", "post"};
  return names;
}

const std::vector<std::string>& names_of(Positions) {
  static const std::vector<std::string> names = {"all", "first_n", "probe"};
  return names;
}

}  // namespace safetune::loss
