// fuzz_onnx_import: the ONNX import path from untrusted bytes. The input is handed to
// otter_session_create_from_buffer as a serialized ModelProto, which parses it (protobuf), imports
// and validates the graph, infers shapes, appends the loss and builds the backward pass. The first
// input byte picks the options (no options, or loss=cross_entropy, which also exercises add_loss
// and autodiff), the rest is the model. Any status is a valid answer; crashes, hangs and
// ASan/UBSan reports are the findings.
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static otter_options* with_loss = [] {
    otter_options* o = nullptr;
    otter_options_create(&o);
    otter_options_set(o, "loss", "cross_entropy");
    return o;
  }();
  // An odd length selects the loss: protobuf never cares about the parity, so the seed models keep
  // both paths without a selector byte in front of them.
  const otter_options* opts = (size & 1) ? with_loss : nullptr;
  otter_session* s = nullptr;
  // base_dir: a directory with no external data in it, so external-data references fail cleanly.
  otter_status st = otter_session_create_from_buffer(data, size, "/nonexistent-otter-fuzz", opts, &s);
  fuzz::check_status(st, "create_from_buffer");
  otter_session_free(s);
  return 0;
}
