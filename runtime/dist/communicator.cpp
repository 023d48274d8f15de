// Choosing and joining the communicator of a session (runtime/dist/communicator.h): the distributed
// mode, the launcher's environment, the check that every rank runs the same model and options
// (before any collective on model buffers, so a mismatch is an error on every rank, not a hang),
// and the engines this build has.
#include "runtime/dist/communicator.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <vector>

#include "runtime/core/checked.h"
#include "runtime/core/error.h"
#include "runtime/core/file_io.h"
#include "runtime/dist/engines.h"

namespace otter {
namespace {

int env_int(const char* const* names, int fallback) {
  for (const char* const* n = names; *n; ++n) {
    const char* v = std::getenv(*n);
    if (!v || !*v) continue;
    char* end = nullptr;
    long x = std::strtol(v, &end, 10);
    if (*end == '\0' && x >= 0 && x < (1L << 30)) return static_cast<int>(x);
  }
  return fallback;
}

}  // namespace

void validate_dist_mode(const std::string& mode) {
  OTTER_CHECK(mode == "auto" || mode == "mpi" || mode == "off", "distributed must be auto, mpi or off, got '", mode, "'");
}

int launched_world_size() {
  static const char* const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", nullptr};
  return std::max(1, env_int(names, 1));
}

int launched_rank() {
  static const char* const names[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK", nullptr};
  return env_int(names, 0);
}

bool mpi_available() {
#ifdef OTTER_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool nccl_available() {
#ifdef OTTER_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::shared_ptr<Communicator> make_communicator(const DistConfig& config, Device device, const std::string& description) {
  validate_dist_mode(config.mode);
  OTTER_CHECK(std::isfinite(config.timeout_s) && config.timeout_s > 0, "dist_timeout must be a number of seconds > 0, got ",
              config.timeout_s);
  const int launched = launched_world_size();
  if (config.mode == "off" || (config.mode == "auto" && launched <= 1)) return nullptr;
  if (!mpi_available()) {
    if (config.mode == "mpi")
      OTTER_FAIL_KIND(Unsupported, "distributed=mpi: this Otter was built without MPI (configure with -DOTTER_MPI=ON and "
                                   "an MPI library such as libopenmpi-dev)");
    OTTER_FAIL_KIND(Unsupported, "this process was started by an MPI launcher with ", launched,
                    " processes, but this Otter was built without MPI, so each process would train alone: rebuild "
                    "with -DOTTER_MPI=ON (libopenmpi-dev), or set distributed=off (CLI --distributed off) to train ",
                    launched, " independent copies on purpose");
  }
#ifdef OTTER_HAVE_MPI
  std::shared_ptr<Communicator> host = dist::make_mpi_communicator(config.timeout_s);
  dist::check_same_on_every_rank(*host, description);
  if (device == Device::CPU) return host;
#ifdef OTTER_HAVE_NCCL
  return dist::make_nccl_communicator(host, config.timeout_s);
#else
  // Every rank has the same device (part of the description): every rank fails here alike.
  OTTER_FAIL_KIND(Unsupported, "distributed training on ", device_name(device),
                  " needs NCCL, and this Otter was built without it (nccl.h was not found when the CUDA backend "
                  "was configured); use the CPU (device=cpu) or rebuild with NCCL");
#endif
#else
  (void)device;
  (void)description;
  return nullptr;
#endif
}

namespace dist {

void check_same_on_every_rank(Communicator& comm, const std::string& description) {
  // Rank 0's description goes to every rank; each compares it with its own; all learn who differs.
  uint64_t size = description.size();
  comm.host_broadcast(&size, sizeof size, 0);
  std::string root(static_cast<size_t>(size), '\0');
  if (comm.rank() == 0) root = description;
  comm.host_broadcast(root.data(), root.size(), 0);
  std::vector<double> differs(static_cast<size_t>(comm.world_size()), 0.0);
  differs[static_cast<size_t>(comm.rank())] = root == description ? 0.0 : 1.0;
  comm.host_allreduce_max(differs.data(), static_cast<int64_t>(differs.size()));
  std::string ranks;
  for (size_t r = 0; r < differs.size(); ++r)
    if (differs[r] != 0.0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  if (ranks.empty()) return;
  std::string mine;
  if (root != description) {  // the first line that differs
    std::istringstream a(root), b(description);
    std::string la, lb;
    while (true) {
      bool ga = static_cast<bool>(std::getline(a, la)), gb = static_cast<bool>(std::getline(b, lb));
      if (!ga && !gb) break;
      if (!ga) la = "(nothing)";
      if (!gb) lb = "(nothing)";
      if (la != lb || !ga || !gb) {
        mine = "; rank " + std::to_string(comm.rank()) + " has '" + lb + "' where rank 0 has '" + la + "'";
        break;
      }
    }
  }
  if (mine.empty()) mine = " (the error on rank(s) " + ranks + " names the first difference)";
  OTTER_FAIL_KIND(Distributed, "the ranks do not train the same model with the same options: rank(s) ", ranks,
                  " differ from rank 0", mine,
                  ". Every rank must load the same model with the same training options (docs/distributed.md)");
}

std::string broadcast_file(Communicator& comm, const std::string& path, const char* what) {
  // Rank 0 reads; every rank gets the bytes, or rank 0's error (the same failure everywhere).
  std::string bytes, error;
  int64_t header[2] = {0, 0};  // size (or -1 on error), error kind
  if (comm.rank() == 0) {
    try {
      bytes = read_file(path, what);
      header[0] = static_cast<int64_t>(bytes.size());
    } catch (const Error& e) {
      error = e.what();
      header[0] = -1;
      header[1] = static_cast<int64_t>(e.kind());
    }
  }
  comm.host_broadcast(header, sizeof header, 0);
  if (header[0] < 0) {
    uint64_t n = error.size();
    comm.host_broadcast(&n, sizeof n, 0);
    error.resize(static_cast<size_t>(n));
    comm.host_broadcast(error.data(), error.size(), 0);
    throw Error(error + " (read by rank 0)", static_cast<ErrorKind>(header[1]));
  }
  bytes.resize(static_cast<size_t>(header[0]));
  comm.host_broadcast(bytes.data(), bytes.size(), 0);
  return bytes;
}

}  // namespace dist
}  // namespace otter
