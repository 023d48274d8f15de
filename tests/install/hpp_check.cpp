// Compiled by the consumer project (tests/install/CMakeLists.txt) against the installed headers:
// the C++ wrapper <otter/otter.hpp> is usable from an installed prefix (it includes only otter.h),
// and its errors carry the C status.
#include <otter/otter.hpp>

#include <cstdio>

int main() {
  otter::cpp::Options options;
  options.set("loss", "cross_entropy");
  try {
    options.set("optimizer", "rmsprop");
    std::fprintf(stderr, "hpp_check: a bad option value was accepted\n");
    return 1;
  } catch (const otter::cpp::Error& e) {
    if (e.status() != OTTER_ERROR_INVALID_ARGUMENT) return 1;
  }
  std::printf("hpp_check: otter %s ok\n", otter_version());
  return 0;
}
