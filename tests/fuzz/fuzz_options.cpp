// fuzz_options: option parsing and the session set-up they drive (loss, optimizer, schedules,
// precision policy and overrides, loss scaling, trainable/freeze lists, ...). The input is split
// at NUL or newline bytes into alternating key and value strings, each pair given to
// otter_options_set; keys that are too long or rejected are skipped. When at least one pair was
// accepted, a session on the digits MLP is created with those options and, if that succeeds,
// trained one step on a fixed 2-row batch (and checkpointed to a tmpfs file and reloaded). Any
// status is a valid answer; crashes, hangs and ASan/UBSan reports are the findings.
#include "fuzz_common.h"

#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0 || data[i] == '\n') parts.emplace_back();
    else parts.back().push_back(static_cast<char>(data[i]));
  }
  otter_options* o = nullptr;
  if (otter_options_create(&o) != OTTER_OK) std::abort();
  int accepted = 0;
  for (size_t i = 0; i + 1 < parts.size() && i < 32; i += 2) {
    // "tensorboard" creates folders and event files at the path given: never at a fuzzed path
    // (its writer is covered by tests/python/test_tensorboard.py).
    if (parts[i] == "tensorboard") continue;
    // distributed=mpi would initialise MPI inside the fuzzer (the mpi-labelled tests cover it).
    if (parts[i] == "distributed") continue;
    otter_status st = otter_options_set(o, parts[i].c_str(), parts[i + 1].c_str());
    fuzz::check_status(st, "options_set");
    if (st == OTTER_OK) {
      ++accepted;
      const char* back = nullptr;
      fuzz::check_status(otter_options_get(o, parts[i].c_str(), &back), "options_get");
    }
  }
  if (accepted > 0) {
    otter_session* s = nullptr;
    otter_status st = otter_session_create_from_file(fuzz::digits_model(), o, &s);
    fuzz::check_status(st, "create_from_file");
    if (st == OTTER_OK) {
      double loss = 0;
      fuzz::check_status(fuzz::train_tiny(s, &loss), "train_step");
      const std::string& path = fuzz::scratch_path("fuzz_options");
      if (otter_session_save_checkpoint(s, path.c_str()) == OTTER_OK)
        fuzz::check_status(otter_session_load_checkpoint(s, path.c_str()), "load_checkpoint");
    }
    otter_session_free(s);
  }
  otter_options_free(o);
  return 0;
}
