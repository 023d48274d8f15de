// Helpers shared by the fuzz targets: a scratch file on a tmpfs, unique per process, and the
// digits MLP session with a tiny fixed batch. Only the public C API is used.
#pragma once
#include <otter/otter.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

namespace fuzz {

// A path on /dev/shm (or $TMPDIR, /tmp) named after the process, so parallel jobs never collide.
// Removed at exit (libFuzzer leaves through exit() at the end of a timed run).
inline std::string& scratch_storage() {
  static std::string path;
  return path;
}
inline const std::string& scratch_path(const char* tag) {
  std::string& path = scratch_storage();
  if (path.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (tmp ? tmp : "/tmp");
    path = std::string(dir) + "/otter_" + tag + "_" + std::to_string(getpid());
    std::atexit([] {
      std::remove(scratch_storage().c_str());
      std::remove((scratch_storage() + ".tmp").c_str());
    });
  }
  return path;
}

// Writes `data` to the scratch file; false when the write failed (never a finding).
inline bool write_scratch(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}

inline const char* digits_model() {
  const char* env = std::getenv("OTTER_FUZZ_MODEL");
  return env ? env : OTTER_FUZZ_DIGITS_MODEL;
}

// One train_step of the digits MLP on 2 fixed rows (x [2, 64] float32, label [2] int64).
inline otter_status train_tiny(otter_session* s, double* loss) {
  static float x[2 * 64];
  static int64_t y[2] = {3, 7};
  static const int64_t xs[2] = {2, 64}, ys[1] = {2};
  for (int i = 0; i < 2 * 64; ++i) x[i] = static_cast<float>(i % 17) / 16.0f;
  otter_tensor_view in[2] = {{x, OTTER_DTYPE_FLOAT32, 2, xs, OTTER_DEVICE_CPU, 0},
                             {y, OTTER_DTYPE_INT64, 1, ys, OTTER_DEVICE_CPU, 0}};
  const char* names[2] = {"x", "label"};
  return otter_session_train_step(s, 2, names, in, loss);
}

// Any status is a valid answer to a bad input; crashes and sanitizer reports are the findings.
// With OTTER_FUZZ_STRICT=1, OTTER_ERROR_INTERNAL ("a bug in Otter") aborts too.
inline void check_status(otter_status st, const char* what) {
  static const bool strict = [] { const char* e = std::getenv("OTTER_FUZZ_STRICT"); return e && *e == '1'; }();
  if (strict && st == OTTER_ERROR_INTERNAL) {
    std::fprintf(stderr, "%s: OTTER_ERROR_INTERNAL: %s\n", what, otter_last_error());
    std::abort();
  }
}

}  // namespace fuzz
