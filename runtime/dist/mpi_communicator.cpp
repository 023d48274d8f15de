// The MPI engine of the communicator seam (runtime/dist/communicator.h): collectives on host
// buffers for CPU sessions, and the host-side control traffic of every distributed session.
//
// Collectives are MPI's own blocking calls (MPI_Allreduce, MPI_Bcast, MPI_Barrier: the tuned
// algorithms; the non-blocking ones measured 2.4x slower on a 100 MB allreduce here). Each runs
// under a deadline (DistConfig::timeout_s) kept by one watchdog thread per process: a collective
// still waiting at the deadline (a peer that stopped, hung or lost its machine) makes the
// watchdog print which rank waited for what and end the process (_Exit(1)), and mpirun then ends
// the job: no rank hangs. MPI errors come back as return codes (MPI_ERRORS_RETURN on our
// duplicate of MPI_COMM_WORLD) and become ErrorKind::Distributed. The process finalizes MPI at
// exit, or calls MPI_Abort when a communicator was marked broken: MPI_Finalize would wait for
// the peers, and MPI_Abort makes mpirun end every rank at once.
// The C API only: no MPI C++ bindings (deprecated, and a separate library in Open MPI).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "runtime/core/error.h"
#include "runtime/dist/engines.h"

namespace otter::dist {
namespace {

// Process-wide MPI state: whether we initialized MPI and whether any communicator broke.
struct World {
  std::mutex mutex;
  bool initialized_here = false;
  bool broken = false;
};

World& world() {
  static World* w = new World;  // never destroyed: read by the atexit handler
  return *w;
}

void at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (world().broken) {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
}

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(len));
}

void init_mpi() {
  World& w = world();
  std::lock_guard<std::mutex> lock(w.mutex);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  OTTER_CHECK_KIND(Distributed, !finalized, "cannot join the MPI world: MPI was already finalized in this process");
  if (initialized) return;  // the application (or an earlier session) did it
  int provided = 0;
  int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
  OTTER_CHECK_KIND(Distributed, rc == MPI_SUCCESS, "MPI_Init_thread failed: ", mpi_error_text(rc));
  w.initialized_here = true;
  std::atexit(at_exit);
}

// One thread per process watches the collective in progress (there is at most one: sessions are
// used from one thread at a time, MPI_THREAD_SERIALIZED) and ends the process at its deadline.
class Watchdog {
 public:
  static Watchdog& instance() {
    static Watchdog* w = new Watchdog;  // never destroyed: its thread runs until the process ends
    return *w;
  }
  void arm(double seconds, std::string what) {
    std::lock_guard<std::mutex> lock(mutex_);
    deadline_ = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
    what_ = std::move(what);
    armed_ = true;
    cv_.notify_one();
  }
  void disarm() {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
  }

 private:
  Watchdog() { std::thread([this] { run(); }).detach(); }
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      if (!armed_) {
        cv_.wait(lock);
        continue;
      }
      if (std::chrono::steady_clock::now() < deadline_) {
        cv_.wait_until(lock, deadline_);
        continue;
      }
      std::fprintf(stderr,
                   "otter: %s: another rank died, stopped, or is not running the same steps (e.g. fewer batches); "
                   "ending this process so that the job ends (docs/distributed.md)\n",
                   what_.c_str());
      std::fflush(stdout);
      std::fflush(stderr);
      std::_Exit(1);
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  bool armed_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::string what_;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(double timeout_s) : timeout_s_(timeout_s) {
    init_mpi();
    // Errors come back as codes on our communicator (and on the world when MPI is ours: the
    // duplicate is made from it); an application that initialized MPI keeps its own handler.
    if (world().initialized_here) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    {
      Deadline d(this, "joining the MPI world (MPI_Comm_dup)");
      check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    }
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && !broken() && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  const char* backend() const override { return "mpi"; }
  Device device() const override { return Device::CPU; }

  void allreduce_sum(float* data, int64_t n) override { allreduce(data, n, MPI_FLOAT, MPI_SUM, "allreduce_sum"); }
  void allreduce_max(float* data, int64_t n) override { allreduce(data, n, MPI_FLOAT, MPI_MAX, "allreduce_max"); }
  void allreduce_mean(float* data, int64_t n) override {
    allreduce(data, n, MPI_FLOAT, MPI_SUM, "allreduce_mean");
    const float inv = 1.0f / static_cast<float>(size_);  // exact for powers of two
    if ((size_ & (size_ - 1)) == 0) {
      for (int64_t i = 0; i < n; ++i) data[i] *= inv;
    } else {
      const float w = static_cast<float>(size_);
      for (int64_t i = 0; i < n; ++i) data[i] /= w;
    }
  }
  void broadcast(void* data, size_t bytes, int root) override { bcast(data, bytes, root, "broadcast"); }
  void host_allreduce_max(double* data, int64_t n) override {
    allreduce(data, n, MPI_DOUBLE, MPI_MAX, "allreduce_max (host)");
  }
  void host_broadcast(void* data, size_t bytes, int root) override { bcast(data, bytes, root, "broadcast (host)"); }
  void barrier() override {
    usable("barrier");
    Deadline d(this, "barrier");
    check(MPI_Barrier(comm_), "MPI_Barrier");
  }
  void mark_broken(const std::string& why) override {
    if (why_.empty()) why_ = why;
    std::lock_guard<std::mutex> lock(world().mutex);
    world().broken = true;
  }
  bool broken() const override { return !why_.empty(); }

 private:
  void usable(const char* op) {
    OTTER_CHECK_KIND(Distributed, why_.empty(), "rank ", rank_, ": ", op, ": the distributed run is broken (", why_,
                     "); end this process and restart the job (from the last checkpoint)");
  }
  void check(int rc, const char* call) {
    if (rc == MPI_SUCCESS) return;
    std::string why = std::string(call) + " failed: " + mpi_error_text(rc);
    mark_broken(why);
    OTTER_FAIL_KIND(Distributed, "rank ", rank_, " of ", size_, ": ", why,
                    " (another rank probably died or lost its connection; see docs/distributed.md)");
  }
  // Arms the watchdog for one collective (see Watchdog).
  class Deadline {
   public:
    Deadline(const MpiCommunicator* c, const std::string& what) {
      Watchdog::instance().arm(c->timeout_s_, "rank " + std::to_string(c->rank_) + " of " + std::to_string(c->size_) +
                                                  ": " + what + " did not complete within " +
                                                  std::to_string(static_cast<long long>(c->timeout_s_)) + " s (dist_timeout)");
    }
    ~Deadline() { Watchdog::instance().disarm(); }
    Deadline(const Deadline&) = delete;
    Deadline& operator=(const Deadline&) = delete;
  };
  template <typename T>
  void allreduce(T* data, int64_t n, MPI_Datatype type, MPI_Op op, const char* what) {
    usable(what);
    Deadline d(this, what);
    const int64_t chunk = INT_MAX / 2;
    for (int64_t at = 0; at < n; at += chunk)
      check(MPI_Allreduce(MPI_IN_PLACE, data + at, static_cast<int>(std::min(chunk, n - at)), type, op, comm_),
            "MPI_Allreduce");
  }
  void bcast(void* data, size_t bytes, int root, const char* what) {
    usable(what);
    OTTER_CHECK(root >= 0 && root < size_, "broadcast root ", root, " is not a rank of a world of ", size_);
    Deadline d(this, what);
    const size_t chunk = size_t(1) << 30;
    char* p = static_cast<char*>(data);
    for (size_t at = 0; at < bytes; at += chunk)
      check(MPI_Bcast(p + at, static_cast<int>(std::min(chunk, bytes - at)), MPI_BYTE, root, comm_), "MPI_Bcast");
  }

  double timeout_s_;
  int rank_ = 0, size_ = 1;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::string why_;  // non-empty once broken
};

}  // namespace

std::shared_ptr<Communicator> make_mpi_communicator(double timeout_s) {
  return std::make_shared<MpiCommunicator>(timeout_s);
}

}  // namespace otter::dist
