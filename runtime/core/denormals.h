// Flush-to-zero for subnormal floats on the CPU (TrainConfig::flush_denormals, the "denormals"
// option): while a DenormalsFlushed scope lives, every OpenMP thread and the calling thread treat
// subnormal inputs as zero (DAZ) and flush subnormal results to zero (FTZ), as
// torch.set_flush_denormal(True) does. A kernel that meets many subnormals (a randomly initialised
// language model's logits gradient) runs several times faster; results that would be subnormal
// become zero, so it is opt-in. Each thread's previous mode is restored when the scope ends.
#pragma once
#include <vector>

namespace otter {

// x86-64 (SSE MXCSR). Elsewhere false, and TrainConfig checks reject the option.
bool can_flush_denormals();

class DenormalsFlushed {
 public:
  explicit DenormalsFlushed(bool on);
  ~DenormalsFlushed();
  DenormalsFlushed(const DenormalsFlushed&) = delete;
  DenormalsFlushed& operator=(const DenormalsFlushed&) = delete;

 private:
  bool on_ = false;
  unsigned caller_ = 0;           // the calling thread's previous mode
  std::vector<unsigned> team_;    // each OpenMP thread's, by thread number
};

}  // namespace otter
