// The CUDA device: detection, the DeviceBackend (stream-ordered memory pool, copies, one stream
// per process), and the registration of every CUDA kernel family. If the driver or a GPU is
// missing, nothing is installed and the reason is recorded: Otter then runs on the CPU and
// `--device cuda` is a clear error.
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {

Strides broadcast_strides(const Shape& out, const std::vector<const Shape*>& ins) {
  OTTER_CHECK(out.size() <= static_cast<size_t>(kMaxDims), "CUDA kernels support up to ", kMaxDims, " dims, got ",
              out.size());
  OTTER_CHECK(ins.size() <= 4, "CUDA broadcast supports up to 4 inputs");
  Strides s;
  s.rank = static_cast<int>(out.size());
  for (int d = 0; d < s.rank; ++d) s.out[d] = out[d];
  for (size_t k = 0; k < ins.size(); ++k) {
    const Shape& in = *ins[k];
    std::vector<int64_t> st = shape_strides(in);
    size_t offset = out.size() - in.size();
    for (int d = 0; d < s.rank; ++d) {
      if (static_cast<size_t>(d) < offset) { s.in[k][d] = 0; continue; }
      size_t j = d - offset;
      s.in[k][d] = in[j] == 1 ? 0 : st[j];
    }
  }
  return s;
}

ReduceToShape reduce_to_shape(const Shape& gs, const Shape& out) {
  OTTER_CHECK(out.size() <= gs.size() && gs.size() <= static_cast<size_t>(kMaxDims), "cannot reduce ", shape_str(gs),
              " to ", shape_str(out));
  Shape like(gs.size() - out.size(), 1);
  like.insert(like.end(), out.begin(), out.end());
  std::vector<int64_t> gst = shape_strides(gs);
  ReduceToShape r;
  r.keep.rank = r.reduced.rank = static_cast<int>(gs.size());
  for (size_t d = 0; d < gs.size(); ++d) {
    bool reduced = like[d] == 1 && gs[d] != 1;
    r.keep.out[d] = reduced ? 1 : gs[d];
    r.keep.in[0][d] = reduced ? 0 : gst[d];
    r.reduced.out[d] = reduced ? gs[d] : 1;
    r.reduced.in[0][d] = reduced ? gst[d] : 0;
    r.count *= r.reduced.out[d];
  }
  return r;
}

namespace {

class CudaBackend : public DeviceBackend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    OTTER_CUDA_CHECK(cudaSetDevice(device_));
    OTTER_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    cudaDeviceProp prop;
    OTTER_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    name_ = prop.name;
    total_ = prop.totalGlobalMem;
    // Keep freed memory in the pool instead of returning it to the driver at each sync.
    cudaMemPool_t pool;
    OTTER_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_));
    uint64_t threshold = UINT64_MAX;
    OTTER_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  }
  void* allocate(size_t bytes) override {
    void* p = nullptr;
    cudaError_t err = cudaMallocAsync(&p, bytes, stream_);
    if (err != cudaSuccess) {
      cudaGetLastError();
      size_t free_bytes = 0, total = 0;
      cudaMemGetInfo(&free_bytes, &total);
      throw Error(cat("CUDA out of memory allocating ", bytes, " bytes on cuda:", device_, " (", free_bytes,
                      " bytes free of ", total, "): ", cudaGetErrorString(err)),
                  ErrorKind::OutOfMemory);
    }
    return p;
  }
  void release(void* p) override { cudaFreeAsync(p, stream_); }
  void copy(void* dst, Device dd, const void* src, Device sd, size_t bytes) override {
    cudaMemcpyKind kind = dd == Device::CPU ? (sd == Device::CPU ? cudaMemcpyHostToHost : cudaMemcpyDeviceToHost)
                                            : (sd == Device::CPU ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice);
    OTTER_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream_));
    if (dd == Device::CPU || sd == Device::CPU) OTTER_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void upload_async(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    OTTER_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capturing));
    if (capturing != cudaStreamCaptureStatusNone) {
      // A captured copy reads its source at every replay: give it pinned memory of its own, kept
      // for the life of the process (a graph is captured once per plan, so this stays small).
      // cudaMallocHost is not allowed in this thread's (thread-local) capture mode: relax it for the
      // call, which enqueues nothing on the stream.
      void* host = nullptr;
      cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
      OTTER_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
      cudaError_t err = cudaMallocHost(&host, bytes);
      cudaThreadExchangeStreamCaptureMode(&mode);
      OTTER_CUDA_CHECK(err);
      captured_sources_.emplace_back(host, [](void* p) { cudaFreeHost(p); });
      std::memcpy(host, src, bytes);
      OTTER_CUDA_CHECK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_));
      return;
    }
    Staging& s = staging_for(bytes);
    std::memcpy(s.host, src, bytes);
    OTTER_CUDA_CHECK(cudaMemcpyAsync(dst, s.host, bytes, cudaMemcpyHostToDevice, stream_));
    OTTER_CUDA_CHECK(cudaEventRecord(s.done, stream_));
  }
  void begin_capture() override {
    OTTER_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  }
  std::shared_ptr<void> end_capture(std::string* why_not) override {
    cudaGraph_t graph = nullptr;
    cudaError_t err = cudaStreamEndCapture(stream_, &graph);
    if (err != cudaSuccess || !graph) {
      cudaGetLastError();
      if (graph) cudaGraphDestroy(graph);
      *why_not = cat("stream capture failed: ", cudaGetErrorString(err));
      return nullptr;
    }
    cudaGraphExec_t exec = nullptr;
    err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (err != cudaSuccess) {
      cudaGetLastError();
      *why_not = cat("graph instantiation failed: ", cudaGetErrorString(err));
      return nullptr;
    }
    return std::shared_ptr<void>(exec, [](void* e) { cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(e)); });
  }
  size_t peak_bytes() override {
    cudaMemPool_t pool;
    uint64_t v = 0;
    OTTER_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_));
    OTTER_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &v));
    return static_cast<size_t>(v);
  }
  void reset_peak() override {
    cudaMemPool_t pool;
    uint64_t zero = 0;  // resets the high watermark to the current use
    OTTER_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_));
    OTTER_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
  }
  void launch_graph(void* graph) override {
    OTTER_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), stream_));
  }
  void fill_zero(void* p, size_t bytes) override { OTTER_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_)); }
  void synchronize() override { OTTER_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  void* stream() override { return stream_; }
  std::string describe() override {
    return cat("cuda:", device_, " (", name_, ", ", total_ >> 30, " GiB)");
  }

 private:
  // Pinned staging buffers for upload_async: one is reused once the copy that last read it has
  // completed (its event), so uploads do not wait for the device; in a steady training loop the
  // pool settles at about two buffers per input, and it never exceeds kMaxStaging buffers.
  struct Staging {
    void* host = nullptr;
    size_t capacity = 0;
    cudaEvent_t done = nullptr;
    uint64_t last_use = 0;  // order in which buffers were last handed out (0 = never)
  };
  Staging& staging_for(size_t bytes) {
    for (Staging& s : staging_) {
      if (s.capacity < bytes) continue;
      cudaError_t err = cudaEventQuery(s.done);
      if (err == cudaSuccess) {
        s.last_use = ++uses_;
        return s;
      }
      // A busy buffer: cudaErrorNotReady is also recorded as the last error, which the next
      // launch check (cudaGetLastError) would report; clear it here. Anything else is a real error.
      if (err == cudaErrorNotReady) cudaGetLastError();
      else OTTER_CUDA_CHECK(err);
    }
    if (staging_.size() >= kMaxStaging) {
      // The host is far ahead of the GPU (steps that never read a value back): wait for the copy
      // that was issued longest ago and reuse its buffer (grown if needed). This bounds pinned
      // memory and is the only place an asynchronous step can wait.
      // (The least recently handed out buffer, not a round-robin index: the scan above reuses
      // buffers out of order, so an index can name the copy just issued and wait for everything.)
      Staging* oldest = &staging_.front();
      for (Staging& s : staging_)
        if (s.last_use < oldest->last_use) oldest = &s;
      OTTER_CUDA_CHECK(cudaEventSynchronize(oldest->done));
      if (oldest->capacity < bytes) {
        OTTER_CUDA_CHECK(cudaFreeHost(oldest->host));
        oldest->host = nullptr;
        oldest->capacity = 0;  // a failed allocation below must not leave a usable-looking buffer
        OTTER_CUDA_CHECK(cudaMallocHost(&oldest->host, bytes));
        oldest->capacity = bytes;
      }
      oldest->last_use = ++uses_;
      return *oldest;
    }
    Staging s;
    s.capacity = bytes < (1u << 20) ? (1u << 20) : bytes;
    OTTER_CUDA_CHECK(cudaMallocHost(&s.host, s.capacity));
    OTTER_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    s.last_use = ++uses_;
    staging_.push_back(s);
    return staging_.back();
  }
  static constexpr size_t kMaxStaging = 32;  // pinned staging buffers at most
  uint64_t uses_ = 0;  // buffers handed out so far
  std::deque<Staging> staging_;
  std::vector<std::shared_ptr<void>> captured_sources_;
  int device_;
  cudaStream_t stream_ = nullptr;
  std::string name_;
  size_t total_ = 0;
};

}  // namespace

void install_step_ops();  // step_ops.cu

}  // namespace otter::cuda

namespace otter {

// Called once by register_cuda_kernels (kernels/cuda/register.cu): installs the CUDA device if one
// is usable, else records why.
void install_cuda_device() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();
    set_cuda_unavailable_reason(err != cudaSuccess ? cat("no usable CUDA driver or GPU (", cudaGetErrorString(err), ")")
                                                   : std::string("no CUDA GPU found"));
  } else {
    try {
      static cuda::CudaBackend backend(0);
      set_device_backend(Device::CUDA, &backend);
      cuda::install_step_ops();
    } catch (const Error& e) {
      set_cuda_unavailable_reason(e.what());
    }
  }
}

}  // namespace otter
