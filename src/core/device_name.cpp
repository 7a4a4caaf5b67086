// Device names (see device_name.h).
#include "safetune/core/device_name.h"

namespace safetune {

bool is_device_name(const std::string& name) {
  if (name == "cpu" || name == "auto" || name == "cuda") return true;
  if (name.rfind("cuda:", 0) != 0 || name.size() == 5 || name.size() > 8) return false;
  for (size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  return true;
}

}  // namespace safetune
