// Where the generated test data lives: $OTTER_TESTDATA when set (a carried GPU test binary run on
// another machine, scripts/gpu-check --carried), else the build's folder compiled in.
#pragma once
#include <cstdlib>
#include <string>

namespace otter::testing {

inline std::string testdata_dir() {
  const char* env = std::getenv("OTTER_TESTDATA");
  return env && *env ? std::string(env) : std::string(OTTER_TESTDATA);
}

}  // namespace otter::testing
