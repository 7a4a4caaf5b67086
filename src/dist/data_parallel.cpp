// Data parallelism over c10d (see data_parallel.h): the torchrun environment, the process
// group over a TCPStore, bucketed gradient all-reduce, barriers.
//
// Gradients are reduced after the rank's last backward pass of a step, not overlapped
// with it: every bucket is flattened and its all-reduce started before the first is
// waited for, so packing, communication and unpacking of different buckets overlap with
// each other, but not with backward compute. (Overlap through autograd hooks would have
// to skip all but the last micro-batch of an accumulation group and order buckets by
// gradient readiness; on CPU, where backward and Gloo compete for the same cores, the
// gain is small.)
//
// Build: cmake/dist.cmake defines SAFETUNE_C10D_GLOO for this file when the gloo headers
// are found (Debian: libgloo-dev), and SAFETUNE_C10D_NCCL when the LibTorch is a CUDA
// build with nccl.h. Without them a multi-process run is refused with a clear message.
#include "safetune/dist/data_parallel.h"

#include <ATen/ATen.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "safetune/core/error.h"

// The c10d headers compile only with their backend macros defined.
#ifdef SAFETUNE_C10D_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef SAFETUNE_C10D_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace safetune::dist {
namespace {

// An integer environment variable, or `fallback` when unset.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > 1000000) input_error(name, std::string("expected a non-negative integer, got '") + v + "'");
  return static_cast<int>(x);
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// Loss terms travel in fixed slots so that every rank sends the same shape, also a rank
// that had no micro-batch this step (it knows no term names).
constexpr int kTermSlots = 16;

}  // namespace

Env env_from_environment() {
  Env e;
  e.world_size = env_int("WORLD_SIZE", 1);
  if (e.world_size < 1) input_error("WORLD_SIZE", "must be at least 1");
  e.rank = env_int("RANK", 0);
  if (e.rank >= e.world_size)
    input_error("RANK", std::to_string(e.rank) + " is not below WORLD_SIZE " + std::to_string(e.world_size));
  e.local_rank = env_int("LOCAL_RANK", e.rank);
  e.local_world_size = std::max(1, env_int("LOCAL_WORLD_SIZE", e.world_size));
  if (e.world_size == 1) return e;
  const char* addr = std::getenv("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0')
    input_error("MASTER_ADDR", "must be set when WORLD_SIZE > 1 (the host of rank 0; scripts/launch.sh sets it)");
  e.master_addr = addr;
  if (std::getenv("MASTER_PORT") == nullptr) input_error("MASTER_PORT", "must be set when WORLD_SIZE > 1");
  e.master_port = env_int("MASTER_PORT", 0);
  if (e.master_port < 1 || e.master_port > 65535) input_error("MASTER_PORT", "must be in 1..65535");
  return e;
}

#ifdef SAFETUNE_C10D_GLOO

struct DataParallel::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef SAFETUNE_C10D_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  at::Device device{at::kCPU};
  // The handle of an asynchronous collective (c10d::Work; its scope moved between versions).
  using WorkPtr = decltype(std::declval<c10d::ProcessGroupGloo&>().barrier());

  // Runs op(process_group) on the backend in use; both share c10d's collective API.
  template <class Op>
  auto call(Op&& op) {
#ifdef SAFETUNE_C10D_NCCL
    if (nccl) return op(*nccl);
#endif
    return op(*gloo);
  }
};

namespace {

// A failed collective leaves the process group unusable, and tearing it down can block on
// the peer that vanished: say which operation failed and why, then leave at once.
[[noreturn]] void fail(const Env& env, double timeout_s, const std::string& what, const std::exception& e) {
  std::fflush(stdout);
  std::fprintf(stderr,
               "safetune: error: distributed training, rank %d of %d: %s failed: another rank exited or did not "
               "answer within train.dist_timeout_s=%g s (%s)\n",
               env.rank, env.world_size, what.c_str(), timeout_s, first_line(e.what()).c_str());
  std::fflush(stderr);
  std::_Exit(kExitEnvironment);  // a lost peer is the environment's failure, not the input's
}

// The address of this host from which it reaches `host` (the source address the routing
// table picks; connecting a UDP socket sends nothing), or "" when it cannot tell.
std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return "";
  std::string out;
  for (addrinfo* a = found; a != nullptr && out.empty(); a = a->ai_next) {
    const int s = ::socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) continue;
    sockaddr_storage self{};
    socklen_t len = sizeof self;
    char name[NI_MAXHOST];
    if (::connect(s, a->ai_addr, a->ai_addrlen) == 0 && ::getsockname(s, reinterpret_cast<sockaddr*>(&self), &len) == 0 &&
        ::getnameinfo(reinterpret_cast<sockaddr*>(&self), len, name, sizeof name, nullptr, 0, NI_NUMERICHOST) == 0)
      out = name;
    ::close(s);
  }
  ::freeaddrinfo(found);
  return out;
}

std::shared_ptr<::gloo::transport::Device> gloo_device(const Env& env) {
  // GLOO_SOCKET_IFNAME picks the interface, as in PyTorch; a loopback master means a
  // single-machine run; otherwise the address on the way to MASTER_ADDR, which the other
  // machines reach this one at when they share a network with rank 0 (the address this
  // host's name resolves to, Gloo's own default, may be on no network the peers see, or
  // on none at all in a container); that failing, Gloo's default.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  if (env.master_addr == "localhost" || env.master_addr.rfind("127.", 0) == 0)
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  if (const std::string local = local_address_towards(env.master_addr, env.master_port); !local.empty())
    return c10d::ProcessGroupGloo::createDeviceForHostname(local);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

DataParallel::DataParallel(const Env& env, double timeout_s, const std::string& device_type, int64_t bucket_bytes)
    : env_(env), timeout_s_(timeout_s), bucket_bytes_(std::max<int64_t>(bucket_bytes, 1 << 10)) {
  if (!active()) return;
  if (!(timeout_s > 0)) input_error("train.dist_timeout_s", "must be positive");
  impl_ = std::make_unique<Impl>();
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(std::ceil(timeout_s * 1000)));
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<std::size_t>(env.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    if (device_type == "cuda") {
#ifdef SAFETUNE_C10D_NCCL
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(env.local_rank));
      impl_->device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;
      impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world_size, o);
#else
      input_error("train.device", "this LibTorch was built without NCCL: multi-process CUDA training is unavailable");
#endif
    } else {
      auto o = c10d::ProcessGroupGloo::Options::create(timeout);
      o->devices.push_back(gloo_device(env));
      impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, o);
    }
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    fail(env_, timeout_s_,
         "joining the process group at " + env.master_addr + ":" + std::to_string(env.master_port), e);
  }
}

DataParallel::~DataParallel() = default;

void DataParallel::broadcast(const std::vector<at::Tensor>& tensors) {
  if (!active()) return;
  try {
    at::NoGradGuard no_grad;
    for (const at::Tensor& t : tensors) {
      std::vector<at::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
      impl_->call([&](auto& pg) { return pg.broadcast(one); })->wait();
      if (!one[0].is_same(t)) t.copy_(one[0]);
    }
  } catch (const std::exception& e) {
    fail(env_, timeout_s_, "broadcast of the initial weights", e);
  }
}

namespace {

// Sums `tensors` in place over all ranks: consecutive tensors of one dtype up to `cap`
// bytes are flattened into one buffer (a lone contiguous tensor is reduced in place),
// every buffer's all-reduce is started, then each is waited for and copied back.
void reduce_in_buckets(DataParallel::Impl& impl, const std::vector<at::Tensor>& tensors, int64_t cap) {
  std::vector<std::vector<size_t>> buckets;  // indices into `tensors`
  int64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t b = tensors[i].numel() * static_cast<int64_t>(tensors[i].element_size());
    if (buckets.empty() || bytes + b > cap || tensors[buckets.back().front()].scalar_type() != tensors[i].scalar_type()) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += b;
  }
  std::vector<std::vector<at::Tensor>> bufs(buckets.size());
  std::vector<DataParallel::Impl::WorkPtr> works;
  for (size_t b = 0; b < buckets.size(); ++b) {
    const at::Tensor& first = tensors[buckets[b].front()];
    if (buckets[b].size() == 1 && first.is_contiguous()) {
      bufs[b] = {first.view({-1})};
    } else {
      std::vector<at::Tensor> pieces;
      for (size_t i : buckets[b]) pieces.push_back(tensors[i].reshape({-1}));
      bufs[b] = {at::cat(pieces)};
    }
    works.push_back(impl.call([&](auto& pg) { return pg.allreduce(bufs[b]); }));
  }
  for (size_t b = 0; b < buckets.size(); ++b) {
    works[b]->wait();
    int64_t off = 0;
    for (size_t i : buckets[b]) {
      const at::Tensor& t = tensors[i];
      at::Tensor slice = bufs[b][0].narrow(0, off, t.numel()).view(t.sizes());
      off += t.numel();
      if (slice.data_ptr() != t.data_ptr()) t.copy_(slice);
    }
  }
}

}  // namespace

StepSync DataParallel::sync_step(const std::vector<at::Tensor>& params, std::vector<double>& terms,
                                 bool stop_requested) {
  StepSync out;
  out.stop = stop_requested;
  if (!active()) return out;
  const size_t P = params.size();
  if (terms.size() > static_cast<size_t>(kTermSlots))
    throw std::logic_error("sync_step: more loss terms than slots");
  at::NoGradGuard no_grad;
  try {
    // 1. One small reduction: stop wishes, loss terms (the total first, so that a rank
    //    without terms can still read it), and which parameters have a gradient.
    std::vector<double> meta(2 + kTermSlots + P, 0.0);
    meta[0] = stop_requested ? 1 : 0;
    meta[1] = terms.empty() ? 0 : 1;
    for (size_t k = 0; k < terms.size(); ++k) meta[2 + k] = terms[k];
    for (size_t i = 0; i < P; ++i) meta[2 + kTermSlots + i] = params[i].grad().defined() ? 1 : 0;
    at::Tensor m = at::tensor(meta, at::kDouble).to(impl_->device);
    std::vector<at::Tensor> mv{m};
    impl_->call([&](auto& pg) { return pg.allreduce(mv); })->wait();
    m = mv[0].to(at::kCPU);
    const double* r = m.data_ptr<double>();
    out.stop = r[0] > 0;
    if (r[1] > 0) {
      if (terms.empty()) terms.assign(1, 0.0);  // a rank that ran no micro-batch: the total
      for (size_t k = 0; k < terms.size(); ++k) terms[k] = r[2 + k];
    }

    // 2. The gradients some rank has; zeros stand in for this rank's missing ones.
    std::vector<at::Tensor> grads;
    for (size_t i = 0; i < P; ++i) {
      if (!(r[2 + kTermSlots + i] > 0)) continue;
      const at::Tensor& p = params[i];
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
      grads.push_back(p.grad());
    }
    reduce_in_buckets(*impl_, grads, bucket_bytes_);
  } catch (const std::exception& e) {
    fail(env_, timeout_s_, "all-reduce of the gradients", e);
  }
  return out;
}

void DataParallel::all_reduce_sum(const std::vector<at::Tensor>& tensors) {
  if (!active()) return;
  at::NoGradGuard no_grad;
  try {
    reduce_in_buckets(*impl_, tensors, bucket_bytes_);
  } catch (const std::exception& e) {
    fail(env_, timeout_s_, "all-reduce", e);
  }
}

void DataParallel::barrier(const std::string& what) {
  if (!active()) return;
  try {
    impl_->call([&](auto& pg) { return pg.barrier(); })->wait();
  } catch (const std::exception& e) {
    fail(env_, timeout_s_, "barrier (" + what + ")", e);
  }
}

#else  // no c10d backends in this build

struct DataParallel::Impl {};

DataParallel::DataParallel(const Env& env, double timeout_s, const std::string&, int64_t bucket_bytes)
    : env_(env), timeout_s_(timeout_s), bucket_bytes_(bucket_bytes) {
  if (active())
    input_error("WORLD_SIZE", "this safetune was built without c10d's Gloo backend (install libgloo-dev and "
                              "rebuild): multi-process training is unavailable");
}
DataParallel::~DataParallel() = default;
void DataParallel::broadcast(const std::vector<at::Tensor>&) {}
StepSync DataParallel::sync_step(const std::vector<at::Tensor>&, std::vector<std::pair<std::string, double>>&,
                                 bool stop_requested) {
  return StepSync{stop_requested};
}
void DataParallel::all_reduce_sum(const std::vector<at::Tensor>&) {}
void DataParallel::barrier(const std::string&) {}

#endif

}  // namespace safetune::dist
