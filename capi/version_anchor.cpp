// The C ABI lives here (capi/include/otter/otter.h). This issue delivers only the version entry
// point; the full hourglass API (sessions, tensors, options, status codes) is the C ABI issue.
#include "otter/otter.h"

extern "C" OTTER_API const char* otter_version(void) { return "0.1.0"; }
