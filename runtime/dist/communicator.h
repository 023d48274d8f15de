// The communicator seam of data-parallel training (docs/distributed.md): a small interface over
// the collectives a training session needs, on the flat buffers of its device. Two engines sit
// behind it, chosen by the session's device: MPI on the CPU (runtime/dist/mpi_communicator.cpp:
// MPI launches the processes, gives the ranks and reduces host buffers) and NCCL on CUDA
// (runtime/dist/nccl_communicator.cpp: collectives on device buffers on the session's stream, its
// unique id broadcast through MPI, as llm.c does). Host-side control traffic (agreement on errors,
// the model fingerprint, checkpoint bytes) always goes through MPI.
//
// Every MPI collective runs under a deadline (DistConfig::timeout_s) kept by a watchdog thread: a
// rank whose peer died or stopped prints what it waited for and ends its process (mpirun then
// ends the job) instead of hanging. MPI errors are returned (MPI_ERRORS_RETURN) and thrown as
// ErrorKind::Distributed. After a failure the communicator is broken: every later call fails at
// once, and at exit the process calls MPI_Abort (the job ends) instead of MPI_Finalize (which
// would wait for the peers).
//
// Builds without MPI (OTTER_MPI=OFF or not found) keep working: distributed=off/auto give world
// size 1, and distributed=mpi (or auto under mpirun with more than one process) is a clear error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/core/device.h"

namespace otter {

struct DistConfig {
  // auto: join the MPI world when launched by mpirun (or another MPI launcher) with more than one
  // process, else train alone; mpi: always join (a single process is a world of one); off: never.
  std::string mode = "auto";
  double timeout_s = 300;  // longest wait for one collective before the process ends (watchdog)
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const char* backend() const = 0;  // "mpi" or "nccl"
  virtual Device device() const = 0;        // where the device-buffer collectives read and write

  // Device buffers (the session's device), in place. On CUDA they are enqueued on the session's
  // stream (no host synchronisation); on the CPU they return when done.
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  virtual void allreduce_mean(float* data, int64_t n) = 0;  // sum / world size
  virtual void allreduce_max(float* data, int64_t n) = 0;   // also a logical or of 0/1 flags
  virtual void broadcast(void* data, size_t bytes, int root) = 0;

  // Host memory, for control decisions (through MPI for both engines); blocking.
  virtual void host_allreduce_max(double* data, int64_t n) = 0;
  virtual void host_broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;

  // Declares the run broken after a failure on this rank that the other ranks did not share (they
  // may be waiting in a collective): later calls fail at once, and at exit the process aborts the
  // MPI job instead of finalizing (so the other ranks are ended, not left waiting).
  virtual void mark_broken(const std::string& why) = 0;
  virtual bool broken() const = 0;

  // true on every rank when `flag` is true on any rank.
  bool any(bool flag) {
    double v = flag ? 1.0 : 0.0;
    host_allreduce_max(&v, 1);
    return v != 0.0;
  }
};

// Validates a distributed mode ("auto", "mpi", "off"); throws naming the bad value.
void validate_dist_mode(const std::string& mode);
// The number of processes the MPI launcher started (OMPI_COMM_WORLD_SIZE, PMI_SIZE, ...), 1 when
// the process was not started by one; the rank likewise (0).
int launched_world_size();
int launched_rank();
// Whether this build can join an MPI world (OTTER_MPI) and run NCCL collectives (CUDA + nccl.h).
bool mpi_available();
bool nccl_available();

// The communicator a session on `device` uses under `config`, or null for a world of one process
// that did not ask to join (off, or auto outside a launcher). `description` (one fact a line: the
// device, every parameter's name and shape, the training options) must be the same on every rank,
// checked before any collective on model buffers (dist::check_same_on_every_rank). Throws
// ErrorKind::Distributed or Unsupported with the reason when the world cannot be joined; every
// rank throws alike.
std::shared_ptr<Communicator> make_communicator(const DistConfig& config, Device device, const std::string& description);

namespace dist {
// Throws ErrorKind::Distributed on every rank, naming the ranks whose `description` differs from
// rank 0's and (on those ranks) the first line that differs.
void check_same_on_every_rank(Communicator& comm, const std::string& description);
// Rank 0 reads the file at `path` (runtime/core/file_io.h) and every rank receives its bytes, or
// rank 0's error: a checkpoint needs to exist on rank 0's machine only.
std::string broadcast_file(Communicator& comm, const std::string& path, const char* what);
}  // namespace dist

}  // namespace otter
