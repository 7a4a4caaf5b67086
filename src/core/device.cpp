// Devices: availability checks, synchronisation, peak memory (see device.h).
#include "safetune/core/device.h"

#include <ATen/ATen.h>
#include <sys/resource.h>
#include <torch/cuda.h>

#include "safetune/core/error.h"

// The CUDA caching allocator's statistics live in libc10_cuda, which only a CUDA build of
// LibTorch has (its header ships with CPU builds too, so __has_include cannot tell).
// cmake/cuda.cmake defines SAFETUNE_CUDA_KERNELS exactly when LibTorch has CUDA.
#if defined(SAFETUNE_CUDA_KERNELS) || defined(SAFETUNE_TORCH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#define SAFETUNE_CUDA_MEMORY_STATS 1
#endif

namespace safetune {

c10::Device resolve_device(const std::string& name, const std::string& where, int local_rank) {
  if (!is_device_name(name)) input_error(where, "expected cpu, cuda, cuda:N or auto, got '" + name + "'");
  if (name == "cpu") return c10::Device(c10::kCPU);
  const bool available = torch::cuda::is_available();
  if (name == "auto" && !available) return c10::Device(c10::kCPU);
  if (!available)
    input_error(where, "'" + name +
                           "' needs a GPU, but this LibTorch has no CUDA (a CPU-only build, or no GPU visible); "
                           "use " + where + "=cpu, or build against a CUDA LibTorch (CMAKE_PREFIX_PATH)");
  int index = local_rank >= 0 ? local_rank : 0;
  if (name.rfind("cuda:", 0) == 0) index = std::stoi(name.substr(5));
  const int64_t n = static_cast<int64_t>(torch::cuda::device_count());
  if (index >= n)
    input_error(where, "'" + name + "' (device " + std::to_string(index) + ") but only " + std::to_string(n) +
                           " GPU(s) are visible");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

double peak_memory_mb(const c10::Device& device) {
  if (device.is_cuda()) {
#ifdef SAFETUNE_CUDA_MEMORY_STATS
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0);  // [0]: all pools
#else
    return -1;
#endif
  }
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

void reset_peak_memory(const c10::Device& device) {
#ifdef SAFETUNE_CUDA_MEMORY_STATS
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#else
  (void)device;
#endif
}

}  // namespace safetune
