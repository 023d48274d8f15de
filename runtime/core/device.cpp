// The device table (see device.h).
#include "runtime/core/device.h"

namespace otter {
namespace {
DeviceBackend* backends[2] = {nullptr, nullptr};
std::string& reason() {
  static std::string r = "this build of Otter has no CUDA backend";
  return r;
}
}  // namespace

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }
DeviceBackend* device_backend(Device d) { return backends[static_cast<int>(d)]; }
void set_device_backend(Device d, DeviceBackend* b) { backends[static_cast<int>(d)] = b; }
std::string cuda_unavailable_reason() { return reason(); }
void set_cuda_unavailable_reason(const std::string& r) { reason() = r; }

}  // namespace otter
