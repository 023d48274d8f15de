// Internal to runtime/dist: the constructors of the communicator engines, each compiled only when
// the build has it (OTTER_HAVE_MPI: mpi_communicator.cpp; OTTER_HAVE_NCCL: nccl_communicator.cpp).
#pragma once
#include <memory>

#include "runtime/dist/communicator.h"

namespace otter::dist {

// Joins MPI_COMM_WORLD (MPI_Init_thread on first use; MPI_Finalize, or MPI_Abort after a failure,
// at exit) on a duplicate communicator with MPI_ERRORS_RETURN. Host buffers.
std::shared_ptr<Communicator> make_mpi_communicator(double timeout_s);
// NCCL over the same ranks, bootstrapped through `host` (rank 0's ncclUniqueId broadcast with
// MPI); device collectives on the CUDA backend's stream, host ones forwarded to `host`.
std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator> host, double timeout_s);

}  // namespace otter::dist
