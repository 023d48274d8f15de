// Devices and device memory. The CPU is always present; a CUDA backend, when compiled in and a
// usable GPU exists, installs a DeviceBackend for Device::CUDA at start-up (kernels/cuda). Core
// code never includes CUDA headers: it allocates, copies and synchronises through this table.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace otter {

enum class Device { CPU = 0, CUDA = 1 };
const char* device_name(Device d);

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  // Device memory; throws otter::Error (OutOfMemory) with the size and what is free.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* p) = 0;
  // Copies between any two of host and this device (blocking with respect to the host).
  virtual void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) = 0;
  // Host to this device without waiting for the device: the bytes are staged in pinned memory and
  // copied on the stream, so the host buffer may be reused as soon as this returns.
  virtual void upload_async(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* p, size_t bytes) = 0;
  virtual void synchronize() = 0;
  // The stream kernels are launched on (a cudaStream_t for CUDA); one per process for now.
  virtual void* stream() = 0;
  virtual std::string describe() = 0;  // e.g. "cuda:0 (NVIDIA H200, 139 GiB)"
  // Graphs (CUDA graphs): the work enqueued on stream() between begin_capture and end_capture is
  // recorded, not run; end_capture returns the executable graph, or nullptr with *why_not set
  // when the work could not be captured (a synchronising call inside, for example).
  virtual void begin_capture() = 0;
  virtual std::shared_ptr<void> end_capture(std::string* why_not) = 0;
  virtual void launch_graph(void* graph) = 0;
  // The memory pool's peak bytes in use since reset_peak (device-wide).
  virtual size_t peak_bytes() = 0;
  virtual void reset_peak() = 0;
};

// The backend for `d`, or nullptr if it is not available (no CUDA build, no driver, no GPU).
DeviceBackend* device_backend(Device d);
void set_device_backend(Device d, DeviceBackend* backend);
// Why the CUDA backend is unavailable ("built without CUDA", "no GPU found", ...).
std::string cuda_unavailable_reason();
void set_cuda_unavailable_reason(const std::string& reason);

}  // namespace otter
