// fuzz_npz: the NumPy .npz reader (zip container, stored and deflated members, .npy headers with
// dtype, order and shape) from untrusted bytes. The input is written to a per-process file on a
// tmpfs and loaded with otter_npz_load; on success every entry's view is checked for consistency
// (dtype size, non-negative dims) and every byte of its data is read, so a view that promises more
// bytes than were allocated is an ASan report. Any status is a valid answer.
#include "fuzz_common.h"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = fuzz::scratch_path("fuzz_npz");
  if (!fuzz::write_scratch(path, data, size)) return 0;
  otter_tensor_list* list = nullptr;
  otter_status st = otter_npz_load(path.c_str(), &list);
  fuzz::check_status(st, "npz_load");
  if (st != OTTER_OK) return 0;
  size_t n = 0;
  if (otter_tensor_list_size(list, &n) != OTTER_OK) std::abort();
  volatile uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const char* name = nullptr;
    otter_tensor_view v;
    if (otter_tensor_list_get(list, i, &name, &v) != OTTER_OK || name == nullptr) std::abort();
    size_t elem = otter_dtype_size(static_cast<otter_dtype>(v.dtype));
    if (elem == 0 || v.ndim < 0 || (v.ndim > 0 && v.shape == nullptr)) std::abort();
    size_t count = 1;
    for (int32_t d = 0; d < v.ndim; ++d) {
      if (v.shape[d] < 0) std::abort();
      count *= static_cast<size_t>(v.shape[d]);
    }
    const uint8_t* p = static_cast<const uint8_t*>(v.data);
    if (count * elem > 0 && p == nullptr) std::abort();
    for (size_t b = 0; b < count * elem; ++b) sum = sum + p[b];
    for (const char* c = name; *c; ++c) sum = sum + static_cast<uint8_t>(*c);
  }
  otter_tensor_list_free(list);
  return 0;
}
