// CUDA kernels for the conv op family (Conv, ConvTranspose and their otter.*Grad ops) through
// cuDNN's convolution API, with the semantics of kernels/cpu/conv.cpp. As on the CPU, every op
// pairs an "image" (the tensor the window slides over) with a "grid" (one position per window
// placement): image position = grid position * stride - pad + tap * dilation, and W is per group
// [grid channels, image channels x kernel], which is cuDNN's filter layout. The CPU's three cores
// are one cuDNN call each:
//   correlate   (Conv, ConvTransposeGradInput)           cudnnConvolutionForward, image -> grid
//   scatter     (ConvGradInput, ConvTranspose)           cudnnConvolutionBackwardData, grid -> image
//   weight_grad (ConvGradWeight, ConvTransposeGradWeight) cudnnConvolutionBackwardFilter
// The geometry (grid dims, begin pads, channels) comes from kernels/common/conv_host.h, as on the
// CPU. cuDNN pads both ends of a dim alike; where the begin pad and the end pad the sizes imply
// (negative for ConvTranspose's output_padding / output_shape) cannot be written that way, the
// image goes through a copy, zero-extended or cut by a small kernel. 1-D convs run as 2-D with a unit height; 1 to 3
// spatial dims are supported (cuDNN's limit). Math: FP32 with FMA (never TF32), FP64 in FP64,
// FP16/BF16 with FP32 compute (tensor cores allowed). Bias is added by a small kernel (for
// FP16/BF16 after the convolution's rounding). Algorithms come from cuDNN's heuristics,
// deterministic ones first, cached per geometry; workspaces are stream-ordered allocations.
#include <cudnn.h>

#include <algorithm>
#include <climits>
#include <map>
#include <mutex>
#include <vector>

#include "kernels/common/conv_host.h"
#include "kernels/cuda/cuda_common.cuh"

namespace otter::cuda {
namespace {

[[noreturn]] void cudnn_fail(const Node& node, const char* what, cudnnStatus_t s) {
  ErrorKind kind = ErrorKind::Internal;
  if (static_cast<int>(s) / 1000 * 1000 == CUDNN_STATUS_NOT_SUPPORTED) kind = ErrorKind::Unsupported;
  if (s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED || s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    kind = ErrorKind::OutOfMemory;
  throw Error(cat(node.describe(), ": ", what, " failed: ", cudnnGetErrorString(s)), kind);
}

#define OTTER_CUDNN_CHECK(node, call)                                             \
  do {                                                                            \
    cudnnStatus_t otter_st_ = (call);                                             \
    if (otter_st_ != CUDNN_STATUS_SUCCESS) cudnn_fail((node), #call, otter_st_); \
  } while (0)

// ---- handle, descriptors, buffers ----

// The algorithm chosen for one geometry.
struct Choice {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

// One handle per device, created on first use and never destroyed (destroying it at exit could
// run after the CUDA context is gone). `mu` is held from cudnnSetStream to the last call that
// uses the handle, so two threads never rebind it under each other; it also guards `algos`.
struct Dnn {
  cudnnHandle_t handle = nullptr;
  std::mutex mu;
  std::map<std::vector<int64_t>, Choice> algos;  // key: direction + Descs::key
};

Dnn& dnn_for(const Node& node) {
  static std::mutex mu;
  static std::map<int, Dnn*> handles;
  int device = 0;
  OTTER_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mu);
  Dnn*& d = handles[device];
  if (!d) {
    cudnnHandle_t h = nullptr;
    OTTER_CUDNN_CHECK(node, cudnnCreate(&h));
    d = new Dnn;
    d->handle = h;
  }
  return *d;
}

// cuDNN data and compute types and the host scale type for each storage type.
template <class T> struct DnnType;
template <> struct DnnType<float> {
  static constexpr cudnnDataType_t data = CUDNN_DATA_FLOAT, compute = CUDNN_DATA_FLOAT;
  static constexpr bool tensor_ops = false;
  using scale = float;
};
template <> struct DnnType<double> {
  static constexpr cudnnDataType_t data = CUDNN_DATA_DOUBLE, compute = CUDNN_DATA_DOUBLE;
  static constexpr bool tensor_ops = false;
  using scale = double;
};
template <> struct DnnType<__half> {
  static constexpr cudnnDataType_t data = CUDNN_DATA_HALF, compute = CUDNN_DATA_FLOAT;
  static constexpr bool tensor_ops = true;
  using scale = float;
};
template <> struct DnnType<__nv_bfloat16> {
  static constexpr cudnnDataType_t data = CUDNN_DATA_BFLOAT16, compute = CUDNN_DATA_FLOAT;
  static constexpr bool tensor_ops = true;
  using scale = float;
};

struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  explicit TensorDesc(const Node& node) { OTTER_CUDNN_CHECK(node, cudnnCreateTensorDescriptor(&d)); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  explicit FilterDesc(const Node& node) { OTTER_CUDNN_CHECK(node, cudnnCreateFilterDescriptor(&d)); }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  explicit ConvDesc(const Node& node) { OTTER_CUDNN_CHECK(node, cudnnCreateConvolutionDescriptor(&d)); }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

// Device memory for one call, allocated and freed in stream order.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes) OTTER_CUDA_CHECK(cudaMallocAsync(&p_, bytes, stream_));
  }
  ~DeviceBuffer() {
    if (p_) cudaFreeAsync(p_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
  cudaStream_t stream_;
};

// ---- geometry ----

// The shared geometry (kernels/common/conv_host.h), within cuDNN's 1 to 3 spatial dims.
struct Geometry : conv::ConvGeometry {
  Geometry(conv::ConvGeometry g, const Node& node) : conv::ConvGeometry(std::move(g)) {
    OTTER_CHECK_KIND(Unsupported, image.size() >= 1 && image.size() <= 3, node.describe(),
                     ": the CUDA convolution supports 1 to 3 spatial dims, got ", image.size());
  }
  int64_t image_numel() const { return batch * group * image_channels * shape_numel(image); }
  int64_t grid_numel() const { return batch * group * grid_channels * shape_numel(grid); }
};

// The image as cuDNN sees it. Along a dim with begin pad pb, the end pad pe that the sizes imply
// is image + pb + pe - window = stride * (grid - 1). cuDNN pads both ends by one amount p and
// ignores up to stride - 1 trailing positions, so when pb >= 0 and 0 <= pb - pe < stride it reads
// the image in place with p = pb. Otherwise cuDNN reads image', a copy shifted by pb - p and
// zero-extended or cut at the end, with p = max(0, min(pb, pe)).
struct Lowered {
  bool in_place = true;
  Shape image;                      // image' spatial dims
  std::vector<int64_t> pad, shift;  // cuDNN's pad; image' coordinate = image coordinate + shift
};

Lowered lower(const Geometry& g) {
  Lowered l;
  for (size_t d = 0; d < g.image.size(); ++d) {
    int64_t window = (g.kernel[d] - 1) * g.dilations[d] + 1, s = g.strides[d], pb = g.pads[d];
    int64_t pe = s * (g.grid[d] - 1) + window - g.image[d] - pb;
    if (pb >= 0 && pb - pe >= 0 && pb - pe < s) {
      l.image.push_back(g.image[d]);
      l.pad.push_back(pb);
      l.shift.push_back(0);
      continue;
    }
    int64_t p = std::max<int64_t>(0, std::min(pb, pe));
    l.in_place = false;
    l.image.push_back(g.image[d] + (pb - p) + (pe - p));
    l.pad.push_back(p);
    l.shift.push_back(pb - p);
  }
  return l;
}

int to_int(const Node& node, int64_t v, const char* what) {
  if (v < INT_MIN || v > INT_MAX)
    OTTER_FAIL_KIND(Unsupported, node.describe(), ": ", what, " ", v, " exceeds cuDNN's 32-bit limit");
  return static_cast<int>(v);
}

void set_tensor(const Node& node, cudnnTensorDescriptor_t desc, cudnnDataType_t type, const std::vector<int>& dims) {
  std::vector<int> strides(dims.size());
  int64_t stride = 1;
  for (size_t k = dims.size(); k-- > 0;) {
    strides[k] = to_int(node, stride, "tensor stride");
    stride *= dims[k];
  }
  OTTER_CUDNN_CHECK(node, cudnnSetTensorNdDescriptor(desc, type, static_cast<int>(dims.size()), dims.data(),
                                                     strides.data()));
}

// The descriptors of one call: image' [N, group*ci, image'...], grid [N, group*co, grid...],
// W [group*co, ci, kernel...] and the convolution, plus a key naming all of it.
struct Descs {
  TensorDesc image, grid;
  FilterDesc filter;
  ConvDesc conv;
  std::vector<int64_t> key;

  Descs(const Node& node, const Geometry& g, const Lowered& l, cudnnDataType_t data, cudnnDataType_t compute,
        bool tensor_ops)
      : image(node), grid(node), filter(node), conv(node) {
    std::vector<int> img = {to_int(node, g.batch, "batch"), to_int(node, g.group * g.image_channels, "channels")};
    std::vector<int> grd = {img[0], to_int(node, g.group * g.grid_channels, "channels")};
    std::vector<int> flt = {grd[1], to_int(node, g.image_channels, "channels")};
    std::vector<int> pad, stride, dilation;
    if (g.image.size() == 1) {  // 1-D as 2-D with a unit height
      img.push_back(1);
      grd.push_back(1);
      flt.push_back(1);
      pad.push_back(0);
      stride.push_back(1);
      dilation.push_back(1);
    }
    for (size_t d = 0; d < g.image.size(); ++d) {
      img.push_back(to_int(node, l.image[d], "spatial dim"));
      grd.push_back(to_int(node, g.grid[d], "spatial dim"));
      flt.push_back(to_int(node, g.kernel[d], "kernel dim"));
      pad.push_back(to_int(node, l.pad[d], "pad"));
      stride.push_back(to_int(node, g.strides[d], "stride"));
      dilation.push_back(to_int(node, g.dilations[d], "dilation"));
    }
    set_tensor(node, image.d, data, img);
    set_tensor(node, grid.d, data, grd);
    OTTER_CUDNN_CHECK(node, cudnnSetFilterNdDescriptor(filter.d, data, CUDNN_TENSOR_NCHW, static_cast<int>(flt.size()),
                                                       flt.data()));
    OTTER_CUDNN_CHECK(node, cudnnSetConvolutionNdDescriptor(conv.d, static_cast<int>(pad.size()), pad.data(),
                                                            stride.data(), dilation.data(), CUDNN_CROSS_CORRELATION,
                                                            compute));
    OTTER_CUDNN_CHECK(node, cudnnSetConvolutionGroupCount(conv.d, to_int(node, g.group, "group")));
    OTTER_CUDNN_CHECK(node, cudnnSetConvolutionMathType(conv.d, tensor_ops ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    key.push_back(static_cast<int64_t>(data));
    for (const std::vector<int>* v : {&img, &grd, &flt, &pad, &stride, &dilation}) key.insert(key.end(), v->begin(), v->end());
    key.push_back(g.group);
  }
};

// ---- algorithm choice ----

// Workspace above this is taken only when no algorithm needs less (a large workspace per call can
// exhaust memory that the activations need).
constexpr size_t kWorkspaceLimit = size_t(1) << 30;

// The first usable entry of cuDNN's ranked list: succeeded, no tensor-core math unless allowed
// (keeps FP32 exact); preferring, in this order, deterministic within the workspace limit, any
// within the limit, then the rest.
template <class Perf>
const Perf* pick(const std::vector<Perf>& perfs, int n, bool tensor_ops) {
  for (int pass = 0; pass < 3; ++pass)
    for (int i = 0; i < n; ++i) {
      const Perf& p = perfs[static_cast<size_t>(i)];
      if (p.status != CUDNN_STATUS_SUCCESS) continue;
      if (!tensor_ops && (p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        continue;
      if (pass < 2 && p.memory > kWorkspaceLimit) continue;
      if (pass == 0 && p.determinism != CUDNN_DETERMINISTIC) continue;
      return &p;
    }
  return nullptr;
}

// The cached choice for (direction, descriptors), asking cuDNN's heuristics on a miss:
// query(count, &returned, perfs) runs the direction's cudnnGet*Algorithm_v7. Call with dnn.mu held.
template <class Perf, class Query>
Choice choose(Dnn& dnn, const Node& node, int direction, const Descs& d, bool tensor_ops, int max_count, Query query,
              const char* what) {
  std::vector<int64_t> key = d.key;
  key.push_back(direction);
  auto it = dnn.algos.find(key);
  if (it != dnn.algos.end()) return it->second;
  std::vector<Perf> perfs(static_cast<size_t>(std::max(max_count, 1)));
  int n = 0;
  query(static_cast<int>(perfs.size()), &n, perfs.data());
  const Perf* p = pick(perfs, n, tensor_ops);
  OTTER_CHECK_KIND(Unsupported, p, node.describe(), ": cuDNN has no ", what, " algorithm for this geometry");
  Choice c{static_cast<int>(p->algo), p->mathType};
  dnn.algos[key] = c;
  return c;
}

// ---- cuDNN calls ----

// One cuDNN call per direction, described by a small traits struct: its perf and algorithm types,
// the heuristics query, the workspace query and the call itself, over (a, b) -> out:
//   Fwd        (image, W)    -> grid
//   BwdData    (W, grid)     -> image
//   BwdFilter  (image, grid) -> dW
struct Fwd {
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  using Algo = cudnnConvolutionFwdAlgo_t;
  static constexpr int kDirection = 0;
  static constexpr const char* kWhat = "forward convolution";
  static cudnnStatus_t max_count(cudnnHandle_t h, int* n) { return cudnnGetConvolutionForwardAlgorithmMaxCount(h, n); }
  static cudnnStatus_t query(cudnnHandle_t h, const Descs& d, int count, int* n, Perf* perfs) {
    return cudnnGetConvolutionForwardAlgorithm_v7(h, d.image.d, d.filter.d, d.conv.d, d.grid.d, count, n, perfs);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Descs& d, Algo algo, size_t* bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, d.image.d, d.filter.d, d.conv.d, d.grid.d, algo, bytes);
  }
  static cudnnStatus_t run(cudnnHandle_t h, const void* one, const Descs& d, const void* image, const void* w, Algo algo,
                           void* ws, size_t bytes, const void* zero, void* grid) {
    return cudnnConvolutionForward(h, one, d.image.d, image, d.filter.d, w, d.conv.d, algo, ws, bytes, zero, d.grid.d, grid);
  }
};

struct BwdData {
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  using Algo = cudnnConvolutionBwdDataAlgo_t;
  static constexpr int kDirection = 1;
  static constexpr const char* kWhat = "backward-data convolution";
  static cudnnStatus_t max_count(cudnnHandle_t h, int* n) { return cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, n); }
  static cudnnStatus_t query(cudnnHandle_t h, const Descs& d, int count, int* n, Perf* perfs) {
    return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.filter.d, d.grid.d, d.conv.d, d.image.d, count, n, perfs);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Descs& d, Algo algo, size_t* bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.filter.d, d.grid.d, d.conv.d, d.image.d, algo, bytes);
  }
  static cudnnStatus_t run(cudnnHandle_t h, const void* one, const Descs& d, const void* w, const void* grid, Algo algo,
                           void* ws, size_t bytes, const void* zero, void* image) {
    return cudnnConvolutionBackwardData(h, one, d.filter.d, w, d.grid.d, grid, d.conv.d, algo, ws, bytes, zero, d.image.d,
                                        image);
  }
};

struct BwdFilter {
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  using Algo = cudnnConvolutionBwdFilterAlgo_t;
  static constexpr int kDirection = 2;
  static constexpr const char* kWhat = "backward-filter convolution";
  static cudnnStatus_t max_count(cudnnHandle_t h, int* n) {
    return cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, n);
  }
  static cudnnStatus_t query(cudnnHandle_t h, const Descs& d, int count, int* n, Perf* perfs) {
    return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.image.d, d.grid.d, d.conv.d, d.filter.d, count, n, perfs);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Descs& d, Algo algo, size_t* bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.image.d, d.grid.d, d.conv.d, d.filter.d, algo, bytes);
  }
  static cudnnStatus_t run(cudnnHandle_t h, const void* one, const Descs& d, const void* image, const void* grid, Algo algo,
                           void* ws, size_t bytes, const void* zero, void* dw) {
    return cudnnConvolutionBackwardFilter(h, one, d.image.d, image, d.grid.d, grid, d.conv.d, algo, ws, bytes, zero,
                                          d.filter.d, dw);
  }
};

// The one cuDNN call wrapper: the handle on the kernel's stream, the cached algorithm choice
// (choose), its math type, the workspace, then Dir::run.
template <class Dir, class T>
void cudnn_conv(const KernelContext& ctx, const Descs& d, const T* a, const T* b, T* out) {
  using DT = DnnType<T>;
  const Node& node = ctx.node;
  Dnn& dnn = dnn_for(node);
  std::lock_guard<std::mutex> lock(dnn.mu);
  cudnnHandle_t h = dnn.handle;
  OTTER_CUDNN_CHECK(node, cudnnSetStream(h, stream_of(ctx)));
  int max_count = 0;
  OTTER_CUDNN_CHECK(node, Dir::max_count(h, &max_count));
  Choice c = choose<typename Dir::Perf>(
      dnn, node, Dir::kDirection, d, DT::tensor_ops, max_count,
      [&](int count, int* n, typename Dir::Perf* perfs) { OTTER_CUDNN_CHECK(node, Dir::query(h, d, count, n, perfs)); },
      Dir::kWhat);
  auto algo = static_cast<typename Dir::Algo>(c.algo);
  if (DT::tensor_ops) OTTER_CUDNN_CHECK(node, cudnnSetConvolutionMathType(d.conv.d, c.math));
  size_t bytes = 0;
  OTTER_CUDNN_CHECK(node, Dir::workspace(h, d, algo, &bytes));
  DeviceBuffer ws(bytes, stream_of(ctx));
  typename DT::scale one = 1, zero = 0;
  OTTER_CUDNN_CHECK(node, Dir::run(h, &one, d, a, b, algo, ws.get(), bytes, &zero, out));
}

// ---- own kernels: shifted copy, bias ----

constexpr int kMaxSpatial = 3;

// A copy between two [planes, spatial...] tensors whose spatial coordinates differ by `off`.
struct Shift {
  int dims = 0;
  int64_t dst[kMaxSpatial], src[kMaxSpatial], off[kMaxSpatial];  // src coordinate = dst coordinate + off
  int64_t dst_plane = 1, src_plane = 1, channels = 1;
};

// dst[n, c, i...] = src[n, c, i + off...] (0 outside src), + bias[c] when bias is given.
template <class T>
__global__ void shift_copy_k(const T* __restrict__ src, T* __restrict__ dst, const T* __restrict__ bias, Shift s,
                             int64_t n) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) {
    int64_t plane = i / s.dst_plane, rest = i % s.dst_plane, offset = 0, stride = 1;
    bool inside = true;
    for (int d = s.dims - 1; d >= 0; --d) {
      int64_t c = rest % s.dst[d] + s.off[d];
      rest /= s.dst[d];
      if (c < 0 || c >= s.src[d]) inside = false;
      offset += c * stride;
      stride *= s.src[d];
    }
    C v = inside ? static_cast<C>(load(src, plane * s.src_plane + offset)) : C(0);
    if (bias) v += static_cast<C>(load(bias, plane % s.channels));
    store(dst, i, v);
  }
}

// y[n, c, ...] += bias[c] for y [N, channels, plane].
template <class T>
__global__ void add_bias_k(T* y, const T* __restrict__ bias, int64_t channels, int64_t plane, int64_t n) {
  using C = typename Compute<T>::type;
  GRID_STRIDE(i, n) { store(y, i, static_cast<C>(load(y, i)) + static_cast<C>(load(bias, (i / plane) % channels))); }
}

// dst (spatial dims `to`) from src (spatial dims `from`), src coordinate = dst coordinate + off.
template <class T>
void shift_copy(const KernelContext& ctx, const T* src, const Shape& from, T* dst, const Shape& to,
                const std::vector<int64_t>& off, int64_t planes, const T* bias, int64_t channels) {
  Shift s;
  s.dims = static_cast<int>(to.size());
  for (int d = 0; d < s.dims; ++d) {
    s.dst[d] = to[d];
    s.src[d] = from[d];
    s.off[d] = off[d];
  }
  s.dst_plane = shape_numel(to);
  s.src_plane = shape_numel(from);
  s.channels = channels;
  int64_t n = planes * s.dst_plane;
  if (n == 0) return;
  shift_copy_k<T><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(src, dst, bias, s, n);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

template <class T>
void add_bias(const KernelContext& ctx, T* y, const T* bias, int64_t channels, int64_t plane, int64_t n) {
  if (!bias || n == 0) return;
  add_bias_k<T><<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(y, bias, channels, plane, n);
  OTTER_CUDA_LAUNCH_CHECK(ctx.node.describe());
}

// An empty sum (no channels to reduce, or only padding under every window): bias or zeros.
template <class T>
void fill_bias(const KernelContext& ctx, T* y, const T* bias, int64_t channels, int64_t plane, int64_t n) {
  OTTER_CUDA_CHECK(cudaMemsetAsync(y, 0, static_cast<size_t>(n) * sizeof(T), stream_of(ctx)));
  add_bias(ctx, y, bias, channels, plane, n);
}

std::vector<int64_t> negated(const std::vector<int64_t>& v) {
  std::vector<int64_t> r(v.size());
  for (size_t k = 0; k < v.size(); ++k) r[k] = -v[k];
  return r;
}

// ---- the three cores ----

// grid = correlate(image, W) (+ bias on the grid channels).
template <class T>
void correlate(const KernelContext& ctx, const Geometry& g, const T* image, const T* w, const T* bias, T* grid) {
  using DT = DnnType<T>;
  int64_t n = g.grid_numel(), plane = shape_numel(g.grid), channels = g.group * g.grid_channels;
  if (n == 0) return;
  if (g.image_numel() == 0) {
    fill_bias(ctx, grid, bias, channels, plane, n);
    return;
  }
  Lowered l = lower(g);
  int64_t planes = g.batch * g.group * g.image_channels;
  DeviceBuffer copy(l.in_place ? 0 : static_cast<size_t>(planes * shape_numel(l.image)) * sizeof(T), stream_of(ctx));
  if (!l.in_place)
    shift_copy<T>(ctx, image, g.image, static_cast<T*>(copy.get()), l.image, negated(l.shift), planes, nullptr, 1);
  Descs d(ctx.node, g, l, DT::data, DT::compute, DT::tensor_ops);
  cudnn_conv<Fwd, T>(ctx, d, l.in_place ? image : static_cast<const T*>(copy.get()), w, grid);
  add_bias(ctx, grid, bias, channels, plane, n);
}

// image = the sum of W^T grid back over the windows (+ bias on the image channels).
template <class T>
void scatter(const KernelContext& ctx, const Geometry& g, const T* grid, const T* w, const T* bias, T* image) {
  using DT = DnnType<T>;
  int64_t n = g.image_numel(), plane = shape_numel(g.image), channels = g.group * g.image_channels;
  if (n == 0) return;
  if (g.grid_numel() == 0) {
    fill_bias(ctx, image, bias, channels, plane, n);
    return;
  }
  Lowered l = lower(g);
  Descs d(ctx.node, g, l, DT::data, DT::compute, DT::tensor_ops);
  if (l.in_place) {
    cudnn_conv<BwdData, T>(ctx, d, w, grid, image);
    add_bias(ctx, image, bias, channels, plane, n);
    return;
  }
  int64_t planes = g.batch * channels;
  DeviceBuffer full(static_cast<size_t>(planes * shape_numel(l.image)) * sizeof(T), stream_of(ctx));
  cudnn_conv<BwdData, T>(ctx, d, w, grid, static_cast<T*>(full.get()));
  shift_copy<T>(ctx, static_cast<const T*>(full.get()), l.image, image, g.image, l.shift, planes, bias, channels);
}

// dW = sum over the batch of grid x im2col(image)^T.
template <class T>
void weight_grad(const KernelContext& ctx, const Geometry& g, const T* grid, const T* image, T* dw) {
  using DT = DnnType<T>;
  int64_t n = g.group * g.grid_channels * g.image_channels * shape_numel(g.kernel);
  if (n == 0) return;
  if (g.image_numel() == 0 || g.grid_numel() == 0) {
    OTTER_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(n) * sizeof(T), stream_of(ctx)));
    return;
  }
  Lowered l = lower(g);
  int64_t planes = g.batch * g.group * g.image_channels;
  DeviceBuffer copy(l.in_place ? 0 : static_cast<size_t>(planes * shape_numel(l.image)) * sizeof(T), stream_of(ctx));
  if (!l.in_place)
    shift_copy<T>(ctx, image, g.image, static_cast<T*>(copy.get()), l.image, negated(l.shift), planes, nullptr, 1);
  Descs d(ctx.node, g, l, DT::data, DT::compute, DT::tensor_ops);
  cudnn_conv<BwdFilter, T>(ctx, d, l.in_place ? image : static_cast<const T*>(copy.get()), grid, dw);
}

// ---- ops ----

template <class T> const T* cptr(const Tensor& t) { return static_cast<const T*>(t.raw()); }
template <class T> T* mptr(Tensor& t) { return static_cast<T*>(t.raw()); }

// Any op of the family, resolved by kernels/common/conv_host.h.
template <class T>
void conv_family_typed(KernelContext& ctx, const conv::Call& c) {
  Geometry g(c.geometry, ctx.node);
  const T* bias = c.bias ? cptr<T>(*c.bias) : nullptr;
  switch (c.move) {
    case conv::Move::Correlate: correlate<T>(ctx, g, cptr<T>(*c.source), cptr<T>(*c.weight), bias, mptr<T>(*c.out)); break;
    case conv::Move::Scatter: scatter<T>(ctx, g, cptr<T>(*c.source), cptr<T>(*c.weight), bias, mptr<T>(*c.out)); break;
    case conv::Move::WeightGrad: weight_grad<T>(ctx, g, cptr<T>(*c.grid), cptr<T>(*c.image), mptr<T>(*c.out)); break;
  }
}

void conv_family_kernel(KernelContext& ctx) {
  conv::Call c = conv::resolve(ctx);
  OTTER_CUDA_DISPATCH_FLOAT(ctx.in(0).dtype(), ctx.node.describe(), conv_family_typed<scalar_t>(ctx, c));
}

}  // namespace

void register_conv_kernels(KernelRegistry& r) {
  const std::vector<DType> f = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};
  const Device cuda = Device::CUDA;
  for (const char* op : {"Conv", "ConvTranspose"}) r.add("", op, cuda, f, conv_family_kernel);
  for (const char* op : {"ConvGradInput", "ConvGradWeight", "ConvTransposeGradInput", "ConvTransposeGradWeight"})
    r.add("otter", op, cuda, f, conv_family_kernel);
}

}  // namespace otter::cuda
