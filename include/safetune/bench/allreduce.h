// `safetune bench allreduce`: the gradient all-reduce of data-parallel training, alone:
// every rank sums a float32 buffer of `mb` MB with the others (c10d Gloo over TCP), in the
// trainer's buckets. Run under a launcher that sets RANK / WORLD_SIZE / MASTER_ADDR /
// MASTER_PORT:
//   scripts/launch.sh -n 2 -- build/safetune bench allreduce
// Algorithm bandwidth = bytes / time; bus bandwidth = algorithm bandwidth x 2 (W - 1) / W,
// what each process sends and receives in a ring all-reduce (the NCCL tests' convention,
// comparable across world sizes).
#pragma once
#include <cstdint>

namespace safetune::bench {

struct AllreduceOptions {
  double mb = 64;
  double bucket_mb = 25;
  int iters = 10, warmup = 2;
  double timeout = 120;
};

struct AllreduceResult {
  int rank = 0, world_size = 0;
  double median_s = 0, best_s = 0;
  double algbw_gbs = 0, busbw_gbs = 0;
};

// InputError for bad options or without WORLD_SIZE >= 2; std::runtime_error when the sum
// comes out wrong.
AllreduceResult bench_allreduce(const AllreduceOptions& o);

}  // namespace safetune::bench
