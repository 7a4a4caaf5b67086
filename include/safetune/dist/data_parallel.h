// Data parallelism over LibTorch's c10d: one process per device, each holding the whole
// model, each running forward/backward on its share of every optimizer step's
// micro-batches; gradients are summed across processes before clipping and AdamW, so
// every process applies the same update and the weights stay identical.
//
// Launch is torchrun-style: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT in the environment (scripts/launch.sh sets them for local runs). Rank 0
// hosts a c10d TCPStore at MASTER_ADDR:MASTER_PORT; the process group is Gloo for CPU
// tensors and NCCL for CUDA tensors (when LibTorch was built with it). Each Gloo endpoint
// is on this host's address towards MASTER_ADDR (GLOO_SOCKET_IFNAME overrides it).
//
// The global batch is the config's: train.batch_size x train.grad_accum examples per
// optimizer step, whatever the number of processes. Micro-batch i of a step goes to rank
// i mod WORLD_SIZE, so WORLD_SIZE must divide train.grad_accum. The same config therefore
// trains the same model on 1 or N processes (up to float summation order), and a run can
// be resumed with any world size that divides grad_accum.
//
// c10d stays inside src/dist/: this header needs only ATen's Tensor.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace safetune::dist {

// The torchrun variables. world_size 1 (or WORLD_SIZE unset) = a single process.
struct Env {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// Reads the environment; InputError naming the variable when a value is malformed
// (not a number, RANK >= WORLD_SIZE, a port outside 1..65535).
Env env_from_environment();

// The reduced bookkeeping of one optimizer step.
struct StepSync {
  bool stop = false;  // some rank was asked to stop (SIGINT / SIGTERM): all stop together
};

class DataParallel {
 public:
  // world_size 1: inactive, every collective is a no-op. Otherwise joins the process
  // group (rank 0 hosts the store), waiting at most timeout_s for the others; every later
  // collective fails after timeout_s too, with an error naming the operation, instead of
  // hanging when another rank died: the process exits with kExitEnvironment (4) there. `device_type` "cpu" (Gloo) or "cuda" (NCCL).
  DataParallel(const Env& env, double timeout_s, const std::string& device_type = "cpu",
               int64_t bucket_bytes = int64_t(25) << 20);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  bool active() const { return env_.world_size > 1; }
  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_main() const { return env_.rank == 0; }
  // Whether micro-batch `i` (0-based within the optimizer step) is this rank's.
  bool owns(int64_t i) const { return i % env_.world_size == env_.rank; }

  // Copies rank 0's values into every rank's tensors (start of training).
  void broadcast(const std::vector<at::Tensor>& tensors);

  // After this rank's backward passes: sums the gradients of `params` over all ranks in
  // flat buckets of ~bucket_bytes (all buckets in flight at once), and the weighted loss
  // `terms` likewise: one flat array, the total first, the same layout on every rank that
  // ran a micro-batch; empty on a rank that ran none, which then gets the total alone (it
  // knows no other term). A parameter without a gradient on any rank keeps none; one
  // with a gradient somewhere gets the sum (zeros standing in for the ranks that had
  // none). `stop_requested` is this rank's wish to stop; the result says whether any rank
  // wished it.
  StepSync sync_step(const std::vector<at::Tensor>& params, std::vector<double>& terms, bool stop_requested);

  // Sums `tensors` in place over all ranks (one bucketed pass, as sync_step's gradients).
  void all_reduce_sum(const std::vector<at::Tensor>& tensors);

  // Every rank waits here until all have arrived; `what` names the point in errors.
  void barrier(const std::string& what);

  struct Impl;

 private:
  Env env_;
  double timeout_s_;
  int64_t bucket_bytes_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace safetune::dist
