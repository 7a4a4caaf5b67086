// Data parallelism (dist/data_parallel.h): the torchrun environment, and sync_step's
// reduction between two ranks run as two threads of this process over loopback Gloo:
// summed gradients, zeros for a gradient one rank lacks, none where no rank has one,
// loss terms for a rank that ran no micro-batch, and the stop vote.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "safetune/core/error.h"
#include "safetune/dist/data_parallel.h"

namespace {

using safetune::dist::DataParallel;
using safetune::dist::Env;

struct EnvVars {  // sets variables for one test, restores "unset" after
  std::vector<std::string> names;
  void set(const char* n, const char* v) {
    setenv(n, v, 1);
    names.push_back(n);
  }
  ~EnvVars() {
    for (auto& n : names) unsetenv(n.c_str());
  }
};

// A port the kernel just handed out (bound to port 0, then released).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

TEST(DistEnv, SingleProcessWithoutVariables) {
  Env e = safetune::dist::env_from_environment();
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.rank, 0);
  DataParallel dp(e, 1.0);  // inactive: no store, no group
  EXPECT_FALSE(dp.active());
  EXPECT_TRUE(dp.owns(0) && dp.owns(1));
}

TEST(DistEnv, BadValuesAreInputErrors) {
  {
    EnvVars v;
    v.set("WORLD_SIZE", "2");
    v.set("RANK", "2");
    EXPECT_THROW(safetune::dist::env_from_environment(), safetune::InputError);
  }
  {
    EnvVars v;
    v.set("WORLD_SIZE", "two");
    EXPECT_THROW(safetune::dist::env_from_environment(), safetune::InputError);
  }
  {
    EnvVars v;
    v.set("WORLD_SIZE", "2");
    v.set("RANK", "1");
    v.set("MASTER_ADDR", "127.0.0.1");
    EXPECT_THROW(safetune::dist::env_from_environment(), safetune::InputError);  // no MASTER_PORT
    v.set("MASTER_PORT", "70000");
    EXPECT_THROW(safetune::dist::env_from_environment(), safetune::InputError);
    v.set("MASTER_PORT", "29511");
    Env e = safetune::dist::env_from_environment();
    EXPECT_EQ(e.rank, 1);
    EXPECT_EQ(e.local_world_size, 2);
    EXPECT_EQ(e.master_port, 29511);
  }
}

TEST(DataParallel, SyncStepSumsGradientsAndTermsOverTwoRanks) {
  const int port = free_port();
  ASSERT_GT(port, 0);
  torch::manual_seed(0);
  const at::Tensor g0 = torch::randn({3, 5}), g1 = torch::randn({3, 5}), h1 = torch::randn({7});
  struct Out {
    std::vector<at::Tensor> grads;  // undefined where none
    std::vector<double> terms;  // the total first
    bool stop = false;
  } out[2];
  auto rank_main = [&](int rank) {
    Env e;
    e.rank = rank;
    e.world_size = 2;
    e.local_rank = rank;
    e.local_world_size = 2;
    e.master_addr = "127.0.0.1";
    e.master_port = port;
    // Small buckets, so that the three parameters travel in more than one.
    DataParallel dp(e, 30.0, "cpu", 64);
    // Parameters: a [3,5] both ranks have a gradient for, a [7] only rank 1 has one for,
    // a [2] nobody has one for.
    std::vector<at::Tensor> params = {torch::zeros({3, 5}), torch::zeros({7}), torch::zeros({2})};
    params[0].mutable_grad() = (rank == 0 ? g0 : g1).clone();
    if (rank == 1) params[1].mutable_grad() = h1.clone();
    std::vector<double> terms;
    if (rank == 0) terms = {1.75, 1.5, 0.25};  // total, ce, pact; rank 1 ran no micro-batch
    auto s = dp.sync_step(params, terms, /*stop_requested=*/rank == 1);
    for (auto& p : params) out[rank].grads.push_back(p.grad());
    out[rank].terms = terms;
    out[rank].stop = s.stop;
  };
  std::thread t1(rank_main, 1);
  rank_main(0);
  t1.join();
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    ASSERT_TRUE(out[r].grads[0].defined());
    EXPECT_TRUE(torch::allclose(out[r].grads[0], g0 + g1));
    ASSERT_TRUE(out[r].grads[1].defined());
    EXPECT_TRUE(torch::equal(out[r].grads[1], h1));
    EXPECT_FALSE(out[r].grads[2].defined());
    EXPECT_TRUE(out[r].stop);  // rank 1 asked
    ASSERT_FALSE(out[r].terms.empty());
    EXPECT_DOUBLE_EQ(out[r].terms[0], 1.75);
  }
  EXPECT_EQ(out[1].terms.size(), 1u);  // the total alone
  ASSERT_EQ(out[0].terms.size(), 3u);
  EXPECT_DOUBLE_EQ(out[0].terms[1], 1.5);
  EXPECT_DOUBLE_EQ(out[0].terms[2], 0.25);
}

}  // namespace
