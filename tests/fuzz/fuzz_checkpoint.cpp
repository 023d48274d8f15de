// fuzz_checkpoint: the checkpoint reader (safetensors layout: u64 header length, JSON header with
// dtypes, shapes, data offsets and string metadata, raw data). One digits-MLP session (loss
// cross_entropy, optimizer adamw) is created at start-up; each input is written to a per-process
// tmpfs file and loaded with otter_session_load_checkpoint. After a successful load the session
// must still train: one train_step on a fixed 2-row batch. Any status is a valid answer; crashes
// and ASan/UBSan reports are the findings.
#include "fuzz_common.h"

#include <cstdlib>

static otter_session* session() {
  static otter_session* s = [] {
    otter_options* o = nullptr;
    otter_session* out = nullptr;
    if (otter_options_create(&o) != OTTER_OK || otter_options_set(o, "loss", "cross_entropy") != OTTER_OK ||
        otter_options_set(o, "optimizer", "adamw") != OTTER_OK ||
        otter_session_create_from_file(fuzz::digits_model(), o, &out) != OTTER_OK) {
      std::fprintf(stderr, "fuzz_checkpoint: cannot create the digits session (%s): %s\n", fuzz::digits_model(),
                   otter_last_error());
      std::abort();
    }
    otter_options_free(o);
    return out;
  }();
  return s;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  otter_session* s = session();
  const std::string& path = fuzz::scratch_path("fuzz_checkpoint");
  if (!fuzz::write_scratch(path, data, size)) return 0;
  otter_status st = otter_session_load_checkpoint(s, path.c_str());
  fuzz::check_status(st, "load_checkpoint");
  if (st == OTTER_OK) {
    double loss = 0;
    fuzz::check_status(fuzz::train_tiny(s, &loss), "train_step after load");
  }
  return 0;
}
