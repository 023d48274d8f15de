// The NCCL engine of the communicator seam (runtime/dist/communicator.h), for CUDA sessions:
// allreduce and broadcast on device buffers, enqueued on the CUDA backend's stream (the stream the
// session's kernels run on, so no host synchronisation is added: the found-inf flag is reduced
// with ncclMax on the device and the gradient with ncclAvg). Bootstrapped through MPI as llm.c
// does: rank 0 calls ncclGetUniqueId and MPI broadcasts it; ncclCommInitRank on every rank. Host
// traffic (control decisions, checkpoint bytes) is forwarded to the MPI communicator.
//
// libnccl.so.2 is opened at run time (dlopen), so libotter loads and trains on machines without
// NCCL; only a distributed CUDA session needs it. Compiled only with the CUDA backend and nccl.h.
//
// A watchdog thread records a CUDA event after each collective and checks that it completes
// within dist_timeout; one that does not (a peer that stopped: NCCL kernels wait for it forever)
// makes it print what waited and end the process (mpirun then ends the job), as the MPI engine.
//
// Not done (docs/distributed.md): allreduce in buckets overlapping the backward pass on a second
// stream, and capture of NCCL calls in the step's CUDA graph (distributed CUDA steps are launched
// kernel by kernel).
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/dist/engines.h"

namespace otter::dist {
namespace {

// The NCCL entry points Otter uses, resolved from libnccl.so.2.
struct NcclApi {
  const char* (*get_error_string)(ncclResult_t) = nullptr;
  ncclResult_t (*get_unique_id)(ncclUniqueId*) = nullptr;
  ncclResult_t (*comm_init_rank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*comm_destroy)(ncclComm_t) = nullptr;
  ncclResult_t (*comm_abort)(ncclComm_t) = nullptr;
  ncclResult_t (*all_reduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  std::string error;  // why it could not be loaded
};

const NcclApi& nccl() {
  static const NcclApi api = [] {
    NcclApi a;
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      a.error = std::string("cannot load libnccl.so.2 (") + (e ? e : "not found") +
                "): install NCCL (e.g. pip's nvidia-nccl-cu12 or the libnccl2 package) and put it on LD_LIBRARY_PATH";
      return a;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(lib, name);
      if (!p && a.error.empty()) a.error = std::string("libnccl.so.2 has no ") + name + " (NCCL >= 2.10 is needed)";
      return p;
    };
    a.get_error_string = reinterpret_cast<decltype(a.get_error_string)>(sym("ncclGetErrorString"));
    a.get_unique_id = reinterpret_cast<decltype(a.get_unique_id)>(sym("ncclGetUniqueId"));
    a.comm_init_rank = reinterpret_cast<decltype(a.comm_init_rank)>(sym("ncclCommInitRank"));
    a.comm_destroy = reinterpret_cast<decltype(a.comm_destroy)>(sym("ncclCommDestroy"));
    a.comm_abort = reinterpret_cast<decltype(a.comm_abort)>(sym("ncclCommAbort"));
    a.all_reduce = reinterpret_cast<decltype(a.all_reduce)>(sym("ncclAllReduce"));
    a.broadcast = reinterpret_cast<decltype(a.broadcast)>(sym("ncclBroadcast"));
    return a;
  }();
  return api;
}

// Ends the process when a collective enqueued on the stream has not completed by its deadline.
class NcclWatchdog {
 public:
  NcclWatchdog(double timeout_s, std::string who) : timeout_s_(timeout_s), who_(std::move(who)) {
    thread_ = std::thread([this] { run(); });
  }
  ~NcclWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
    for (auto& p : pending_) cudaEventDestroy(p.event);
    for (cudaEvent_t e : pool_) cudaEventDestroy(e);
  }
  // After a collective was enqueued on `stream` (nothing is waited for here).
  void enqueued(cudaStream_t stream, const char* what) {
    std::lock_guard<std::mutex> lock(mutex_);
    cudaEvent_t e = nullptr;
    if (!pool_.empty()) {
      e = pool_.back();
      pool_.pop_back();
    } else if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
      (void)cudaGetLastError();
      return;  // unwatched rather than failed
    }
    if (cudaEventRecord(e, stream) != cudaSuccess) {
      (void)cudaGetLastError();
      pool_.push_back(e);
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                                 std::chrono::duration<double>(timeout_s_));
    pending_.push_back({e, deadline, what});
  }

 private:
  struct Pending {
    cudaEvent_t event;
    std::chrono::steady_clock::time_point deadline;
    const char* what;
  };
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(200));
      while (!pending_.empty()) {
        Pending& p = pending_.front();
        const cudaError_t r = cudaEventQuery(p.event);
        if (r == cudaErrorNotReady) {
          if (std::chrono::steady_clock::now() < p.deadline) break;
          std::fprintf(stderr,
                       "otter: %s: %s did not complete within %lld s (dist_timeout): another rank died, stopped, or is "
                       "not running the same steps; ending this process so that the job ends (docs/distributed.md)\n",
                       who_.c_str(), p.what, static_cast<long long>(timeout_s_));
          std::fflush(stdout);
          std::fflush(stderr);
          std::_Exit(1);
        }
        if (r != cudaSuccess) (void)cudaGetLastError();  // reported by the session's own next sync
        pool_.push_back(p.event);
        pending_.pop_front();
      }
    }
  }
  double timeout_s_;
  std::string who_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> pool_;
  std::thread thread_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Communicator> host, double timeout_s) : host_(std::move(host)) {
    const NcclApi& api = nccl();
    // Every rank learns whether every rank has NCCL before any NCCL call (no rank left waiting).
    const bool missing = host_->any(!api.error.empty());
    OTTER_CHECK_KIND(Unsupported, !missing, "distributed training on CUDA: ",
                     api.error.empty() ? "another rank cannot load NCCL (see its error)" : api.error);
    DeviceBackend* backend = device_backend(Device::CUDA);
    OTTER_CHECK_KIND(Unsupported, backend, "distributed training on CUDA: no CUDA device: ", cuda_unavailable_reason());
    stream_ = static_cast<cudaStream_t>(backend->stream());
    ncclUniqueId id{};
    std::string failed;
    if (host_->rank() == 0) {
      ncclResult_t r = api.get_unique_id(&id);
      if (r != ncclSuccess) failed = std::string("ncclGetUniqueId: ") + api.get_error_string(r);
    }
    const bool bad_id = host_->any(!failed.empty());
    OTTER_CHECK_KIND(Distributed, !bad_id, "NCCL could not start on rank 0", failed.empty() ? "" : ": " + failed);
    host_->host_broadcast(&id, sizeof id, 0);
    ncclResult_t r = api.comm_init_rank(&comm_, host_->world_size(), id, host_->rank());
    const bool init_failed = host_->any(r != ncclSuccess);
    if (init_failed) {
      if (r == ncclSuccess) api.comm_destroy(comm_);
      comm_ = nullptr;
      OTTER_FAIL_KIND(Distributed, "ncclCommInitRank failed on ",
                      r == ncclSuccess ? "another rank (see its error)" : "this rank: " + std::string(api.get_error_string(r)));
    }
    watchdog_ = std::make_unique<NcclWatchdog>(
        timeout_s, "rank " + std::to_string(host_->rank()) + " of " + std::to_string(host_->world_size()));
  }
  ~NcclCommunicator() override {
    watchdog_.reset();
    if (!comm_) return;
    if (broken()) nccl().comm_abort(comm_);
    else nccl().comm_destroy(comm_);
  }

  int rank() const override { return host_->rank(); }
  int world_size() const override { return host_->world_size(); }
  const char* backend() const override { return "nccl"; }
  Device device() const override { return Device::CUDA; }

  void allreduce_sum(float* data, int64_t n) override { reduce(data, n, ncclSum, "ncclAllReduce(sum)"); }
  void allreduce_mean(float* data, int64_t n) override { reduce(data, n, ncclAvg, "ncclAllReduce(avg)"); }
  void allreduce_max(float* data, int64_t n) override { reduce(data, n, ncclMax, "ncclAllReduce(max)"); }
  void broadcast(void* data, size_t bytes, int root) override {
    usable("ncclBroadcast");
    check(nccl().broadcast(data, data, bytes, ncclUint8, root, comm_, stream_), "ncclBroadcast");
    watchdog_->enqueued(stream_, "ncclBroadcast");
  }
  void host_allreduce_max(double* data, int64_t n) override { host_->host_allreduce_max(data, n); }
  void host_broadcast(void* data, size_t bytes, int root) override { host_->host_broadcast(data, bytes, root); }
  void barrier() override { host_->barrier(); }
  void mark_broken(const std::string& why) override { host_->mark_broken(why); }
  bool broken() const override { return host_->broken(); }

 private:
  void usable(const char* op) {
    OTTER_CHECK_KIND(Distributed, !broken(), "rank ", rank(), ": ", op,
                     ": the distributed run is broken; end this process and restart the job (from the last checkpoint)");
  }
  void check(ncclResult_t r, const char* call) {
    if (r == ncclSuccess) return;
    std::string why = std::string(call) + " failed: " + nccl().get_error_string(r);
    mark_broken(why);
    OTTER_FAIL_KIND(Distributed, "rank ", rank(), " of ", world_size(), ": ", why, " (see docs/distributed.md)");
  }
  void reduce(float* data, int64_t n, ncclRedOp_t op, const char* what) {
    usable(what);
    check(nccl().all_reduce(data, data, static_cast<size_t>(n), ncclFloat32, op, comm_, stream_), what);
    watchdog_->enqueued(stream_, what);
  }

  std::shared_ptr<Communicator> host_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<NcclWatchdog> watchdog_;
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator> host, double timeout_s) {
  return std::make_shared<NcclCommunicator>(std::move(host), timeout_s);
}

}  // namespace otter::dist
