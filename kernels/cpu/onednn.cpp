// The CPU backend's oneDNN seam (see onednn.h). Every call looks its primitive up in a per-thread
// cache keyed by the call's full description (a primitive descriptor costs far more to create
// than to run); convolutions let oneDNN choose its blocked layouts ("any") and reorder from and
// to the plain NC[D]HW tensors Otter keeps, with the reordered buffers cached beside the
// primitive. oneDNN runs on the same OpenMP pool as OpenBLAS and Otter's own loops.
#include "kernels/cpu/onednn.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <unordered_map>

#include "runtime/core/error.h"

#if defined(OTTER_HAVE_ONEDNN)
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace otter::cpu::onednn {

#if !defined(OTTER_HAVE_ONEDNN)

bool available() { return false; }
bool native_bf16() { return false; }
std::string isa() { return "none"; }
void gemm(const Gemm&, const void*, const void*, void*) { OTTER_FAIL("oneDNN is not in this build"); }
void sgemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*,
           int64_t) {
  OTTER_FAIL("oneDNN is not in this build");
}
void conv_forward(const Conv&, const void*, const void*, const void*, void*) { OTTER_FAIL("oneDNN is not in this build"); }
void conv_backward_data(const Conv&, const void*, const void*, void*) { OTTER_FAIL("oneDNN is not in this build"); }
void conv_backward_weights(const Conv&, const void*, const void*, void*) { OTTER_FAIL("oneDNN is not in this build"); }

#else

namespace {

using dnnl::memory;
using tag = memory::format_tag;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

memory::data_type dnnl_type(DType t) {
  switch (t) {
    case DType::Float32: return memory::data_type::f32;
    case DType::BFloat16: return memory::data_type::bf16;
    default: OTTER_FAIL("oneDNN: unsupported dtype ", dtype_name(t));
  }
}

// Runs a oneDNN call, turning its exceptions into Otter errors that say what was being done.
template <class Fn>
auto guarded(const char* what, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const dnnl::error& e) {
    OTTER_FAIL("oneDNN ", what, ": ", e.what());
  }
}

template <class T>
std::string key_of(const char* kind, const T& fields) {
  std::ostringstream k;
  k << kind;
  for (int64_t v : fields) k << ',' << v;
  return k.str();
}

memory::dims dims_of(const std::vector<int64_t>& v) { return memory::dims(v.begin(), v.end()); }

// ---- GEMM ----

struct GemmEntry {
  dnnl::matmul prim;
  memory::desc a, b, c;
};

GemmEntry make_gemm(const Gemm& g) {
  auto ab = dnnl_type(g.ab);
  // 2-D for one GEMM (3-D descriptors with a zero batch stride send oneDNN to its reference
  // code); 3-D for a batch, a broadcast operand as a batch dim of 1 with a dense stride.
  bool batched = g.batch > 1;
  auto desc = [&](int64_t rows, int64_t cols, int64_t ld, bool trans, int64_t stride, memory::data_type t) {
    memory::dims dims = {rows, cols}, strides = {trans ? 1 : ld, trans ? ld : 1};
    if (!batched) return memory::desc(dims, t, strides);
    dims.insert(dims.begin(), stride == 0 ? 1 : g.batch);
    strides.insert(strides.begin(), stride == 0 ? rows * cols : stride);
    return memory::desc(dims, t, strides);
  };
  GemmEntry e;
  e.a = desc(g.m, g.k, g.lda, g.trans_a, g.stride_a, ab);
  e.b = desc(g.k, g.n, g.ldb, g.trans_b, g.stride_b, ab);
  e.c = desc(g.m, g.n, g.ldc, false, g.stride_c == 0 && batched ? g.m * g.ldc : g.stride_c, dnnl_type(g.c));
  dnnl::primitive_attr attr;
  if (g.alpha != 1.0f) attr.set_output_scales(0, {g.alpha});
  if (g.beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(g.beta);
    attr.set_post_ops(ops);
  }
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(e.a, e.b, e.c), attr, engine());
  e.prim = dnnl::matmul(pd);
  return e;
}

// ---- convolution ----

struct ConvEntry {
  memory::desc x, w, y, b;  // the plain (user) layouts
  dnnl::convolution_forward::primitive_desc fwd;
  dnnl::primitive prim;
  // The primitive's layouts, and buffers in them when they differ from the plain ones.
  memory::desc px, pw, py;
  std::unique_ptr<memory> mx, mw, my;
};

memory::desc plain(const memory::dims& dims, memory::data_type t) {
  // NC[D]HW / OI[D]HW / GOI[D]HW: row-major strides.
  memory::dims strides(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * dims[i + 1];
  return memory::desc(dims, t, strides);
}

struct ConvDescs {
  memory::desc x, w, y, b;
  memory::dims strides, dilates, pad_l, pad_r;
};

ConvDescs conv_descs(const Conv& c) {
  auto t = dnnl_type(c.data);
  ConvDescs d;
  memory::dims x = {c.batch, c.in_channels}, y = {c.batch, c.out_channels};
  for (int64_t v : c.in) x.push_back(v);
  for (int64_t v : c.out) y.push_back(v);
  memory::dims w;
  if (c.group > 1) w = {c.group, c.out_channels / c.group, c.in_channels / c.group};
  else w = {c.out_channels, c.in_channels};
  for (int64_t v : c.kernel) w.push_back(v);
  d.x = plain(x, t);
  d.y = plain(y, t);
  d.w = plain(w, t);
  d.b = plain({c.out_channels}, t);
  d.strides = dims_of(c.strides);
  for (int64_t v : c.dilations) d.dilates.push_back(v - 1);  // oneDNN counts the gaps
  d.pad_l = dims_of(c.pads_begin);
  d.pad_r = dims_of(c.pads_end);
  return d;
}

memory::desc any_like(const memory::desc& d) { return memory::desc(d.dims(), d.data_type(), tag::any); }

dnnl::convolution_forward::primitive_desc forward_pd(const ConvDescs& d, bool bias) {
  auto prop = dnnl::prop_kind::forward_training;
  auto alg = dnnl::algorithm::convolution_direct;
  if (bias)
    return dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(prop, alg, any_like(d.x), any_like(d.w), d.b, any_like(d.y), d.strides,
                                        d.dilates, d.pad_l, d.pad_r),
        engine());
  return dnnl::convolution_forward::primitive_desc(
      dnnl::convolution_forward::desc(prop, alg, any_like(d.x), any_like(d.w), any_like(d.y), d.strides, d.dilates,
                                      d.pad_l, d.pad_r),
      engine());
}

std::vector<int64_t> conv_fields(const Conv& c, int64_t pass, bool bias) {
  std::vector<int64_t> f = {pass, static_cast<int64_t>(c.data), c.batch, c.group, c.in_channels, c.out_channels, bias};
  for (const auto* v : {&c.in, &c.out, &c.kernel, &c.strides, &c.dilations, &c.pads_begin, &c.pads_end}) {
    f.push_back(static_cast<int64_t>(v->size()));
    f.insert(f.end(), v->begin(), v->end());
  }
  return f;
}

// Makes (or finds) the entry of one pass: 0 forward, 1 backward data, 2 backward weights.
ConvEntry& conv_entry(const Conv& c, int pass, bool bias) {
  thread_local std::unordered_map<std::string, std::unique_ptr<ConvEntry>> cache;
  std::string key = key_of("conv", conv_fields(c, pass, bias));
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;
  if (cache.size() > 512) cache.clear();
  auto e = std::make_unique<ConvEntry>();
  ConvDescs d = conv_descs(c);
  e->x = d.x;
  e->w = d.w;
  e->y = d.y;
  e->b = d.b;
  e->fwd = forward_pd(d, bias && pass == 0);
  auto alg = dnnl::algorithm::convolution_direct;
  if (pass == 0) {
    e->px = e->fwd.src_desc();
    e->pw = e->fwd.weights_desc();
    e->py = e->fwd.dst_desc();
    e->prim = dnnl::convolution_forward(e->fwd);
  } else if (pass == 1) {
    dnnl::convolution_backward_data::primitive_desc pd(
        dnnl::convolution_backward_data::desc(alg, any_like(d.x), any_like(d.w), any_like(d.y), d.strides, d.dilates,
                                              d.pad_l, d.pad_r),
        engine(), e->fwd);
    e->px = pd.diff_src_desc();
    e->pw = pd.weights_desc();
    e->py = pd.diff_dst_desc();
    e->prim = dnnl::convolution_backward_data(pd);
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        dnnl::convolution_backward_weights::desc(alg, any_like(d.x), any_like(d.w), any_like(d.y), d.strides,
                                                 d.dilates, d.pad_l, d.pad_r),
        engine(), e->fwd);
    e->px = pd.src_desc();
    e->pw = pd.diff_weights_desc();
    e->py = pd.diff_dst_desc();
    e->prim = dnnl::convolution_backward_weights(pd);
  }
  if (e->px != e->x) e->mx = std::make_unique<memory>(e->px, engine());
  if (e->pw != e->w) e->mw = std::make_unique<memory>(e->pw, engine());
  if (e->py != e->y) e->my = std::make_unique<memory>(e->py, engine());
  return *cache.emplace(key, std::move(e)).first->second;
}

// The primitive-layout memory of a plain buffer: the buffer itself, or the entry's reorder
// buffer (filled from the buffer when `read`).
memory in_layout(const memory::desc& plain_desc, const std::unique_ptr<memory>& staged, const void* data, bool read) {
  memory user(plain_desc, engine(), const_cast<void*>(data));
  if (!staged) return user;
  if (read) dnnl::reorder(user, *staged).execute(stream(), user, *staged);
  return *staged;
}

void out_of_layout(const memory::desc& plain_desc, const std::unique_ptr<memory>& staged, void* data) {
  if (!staged) return;
  memory user(plain_desc, engine(), data);
  dnnl::reorder(*staged, user).execute(stream(), *staged, user);
}

}  // namespace

bool available() {
  static const bool yes = [] {
    const char* env = std::getenv("OTTER_CPU_ONEDNN");
    return !(env && std::strcmp(env, "0") == 0);
  }();
  return yes;
}

// From cpuid (oneDNN's get_effective_cpu_isa() is the highest ISA it may use, not what the CPU has).
std::string isa() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512bf16")) return "avx512_bf16";
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "baseline";
}

bool native_bf16() {
  static const bool yes = [] {
    const char* env = std::getenv("OTTER_CPU_BF16");
    if (!available() || (env && std::strcmp(env, "0") == 0)) return false;
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx512bf16") != 0;
#else
    return false;  // Arm BF16 (ARMv8.6) through oneDNN: not wired up yet
#endif
  }();
  return yes;
}

void gemm(const Gemm& g, const void* a, const void* b, void* c) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  OTTER_CHECK(g.k > 0, "oneDNN gemm: k = 0 is handled by the caller");
  thread_local std::unordered_map<std::string, GemmEntry> cache;
  std::vector<int64_t> fields = {static_cast<int64_t>(g.ab), static_cast<int64_t>(g.c), g.trans_a, g.trans_b, g.m, g.n,
                                 g.k, g.lda, g.ldb, g.ldc, g.batch, g.stride_a, g.stride_b, g.stride_c};
  int32_t alpha_bits, beta_bits;
  std::memcpy(&alpha_bits, &g.alpha, 4);
  std::memcpy(&beta_bits, &g.beta, 4);
  fields.push_back(alpha_bits);
  fields.push_back(beta_bits);
  std::string key = key_of("gemm", fields);
  auto it = cache.find(key);
  if (it == cache.end()) {
    if (cache.size() > 4096) cache.clear();
    it = cache.emplace(key, guarded("matmul", [&] { return make_gemm(g); })).first;
  }
  GemmEntry& e = it->second;
  guarded("matmul", [&] {
    memory ma(e.a, engine(), const_cast<void*>(a)), mb(e.b, engine(), const_cast<void*>(b)), mc(e.c, engine(), c);
    e.prim.execute(stream(), {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
    stream().wait();
    return 0;
  });
}

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  OTTER_CHECK(st == dnnl_success, "oneDNN sgemm (", m, "x", n, "x", k, ") failed with status ", static_cast<int>(st));
}

void conv_forward(const Conv& c, const void* x, const void* w, const void* bias, void* y) {
  guarded("convolution", [&] {
    ConvEntry& e = conv_entry(c, 0, bias != nullptr);
    memory mx = in_layout(e.x, e.mx, x, true), mw = in_layout(e.w, e.mw, w, true), my = in_layout(e.y, e.my, y, false);
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, mx}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, my}};
    if (bias) args.insert({DNNL_ARG_BIAS, memory(e.b, engine(), const_cast<void*>(bias))});
    e.prim.execute(stream(), args);
    out_of_layout(e.y, e.my, y);
    stream().wait();
    return 0;
  });
}

void conv_backward_data(const Conv& c, const void* dy, const void* w, void* dx) {
  guarded("convolution backward data", [&] {
    ConvEntry& e = conv_entry(c, 1, false);
    memory my = in_layout(e.y, e.my, dy, true), mw = in_layout(e.w, e.mw, w, true), mx = in_layout(e.x, e.mx, dx, false);
    e.prim.execute(stream(), {{DNNL_ARG_DIFF_DST, my}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DIFF_SRC, mx}});
    out_of_layout(e.x, e.mx, dx);
    stream().wait();
    return 0;
  });
}

void conv_backward_weights(const Conv& c, const void* x, const void* dy, void* dw) {
  guarded("convolution backward weights", [&] {
    ConvEntry& e = conv_entry(c, 2, false);
    memory mx = in_layout(e.x, e.mx, x, true), my = in_layout(e.y, e.my, dy, true), mw = in_layout(e.w, e.mw, dw, false);
    e.prim.execute(stream(), {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DIFF_DST, my}, {DNNL_ARG_DIFF_WEIGHTS, mw}});
    out_of_layout(e.w, e.mw, dw);
    stream().wait();
    return 0;
  });
}

#endif

}  // namespace otter::cpu::onednn
