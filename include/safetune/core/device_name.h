// The names of the devices safetune computes on: cpu | cuda | cuda:N | auto. Syntax only
// (no LibTorch here, so that config parsing builds without it); what a name stands for on
// this machine is resolve_device (device.h).
#pragma once
#include <string>

namespace safetune {

// Whether `name` is one of cpu | auto | cuda | cuda:N (no GPU is looked for).
bool is_device_name(const std::string& name);

}  // namespace safetune
