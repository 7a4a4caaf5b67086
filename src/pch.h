// Precompiled header shared by the library, the binary and the tests.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include "safetune/core/log.h"
#include <string>
#include <vector>
#include <map>
#include <memory>
#include <optional>
