// Shape ops: the ops that move or select data without arithmetic (Reshape, Flatten, Transpose,
// Squeeze, Unsqueeze, Concat, Split, Slice, Gather, Expand), the ops that make tensors (Shape,
// Size, Constant, ConstantOfShape, Range), and the internal ops their gradients use
// (otter.ConcatGrad, otter.SplitGrad, otter.SliceGrad, otter.GatherGrad). Opset 13+ forms only:
// axes, split sizes and shapes are inputs (the importer rewrites the older attribute forms).
//
// Shape computations flow through inference. Shape publishes its input's (possibly symbolic)
// dims as shape_data, Reshape/Expand/ConstantOfShape read them as dims, and the small int64 ops
// that exported shape computations are made of (Gather, Slice, Concat, Squeeze, Unsqueeze,
// Reshape of a shape) pass such values on. A negative number is a symbol in shape_data but a
// literal (Reshape's -1) in known data, so a computed value is published as shape_data when it
// holds no literal negative and as data when it holds no symbol (and not at all when it mixes).
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/core/checked.h"
#include "runtime/ops/op.h"

namespace otter {
namespace {

// Int values larger than this are not passed on by inference (shapes are tiny).
constexpr size_t kMaxShapeValues = 64;

// ---- reading int inputs ----

// An int input's values: `dims` when they come from a Shape result (negative entries are
// symbols), literal numbers when they come from known data.
struct Ints {
  std::vector<int64_t> v;
  bool dims = false;
};

std::optional<Ints> read_ints(const InferContext& c, size_t i) {
  if (!c.has_input(i)) return std::nullopt;
  if (const Tensor* t = c.data(i)) return Ints{t->to_int64_vector(), false};
  const ValueInfo& v = c.input(i);
  if (v.has_shape_data) return Ints{v.shape_data, true};
  return std::nullopt;
}

// Values used as plain numbers (axes, starts, split sizes, indices); unknown while a Shape result
// still holds a symbol.
std::optional<std::vector<int64_t>> literal_ints(const InferContext& c, size_t i) {
  std::optional<Ints> r = read_ints(c, i);
  if (!r) return std::nullopt;
  if (r->dims)
    for (int64_t x : r->v)
      if (x < 0) return std::nullopt;
  return r->v;
}

// The length of a 1-D input (a shape, axes, starts...), which must be known.
int64_t vector_length(const InferContext& c, size_t i, const char* what) {
  const Shape& s = c.shape(i);
  if (s.size() != 1) c.fail(cat("the ", what, " input must be 1-D, got shape ", c.dims(s)));
  if (s[0] < 0) c.fail(cat("the length of the ", what, " input must be known"));
  return s[0];
}

Shape unknown_dims(InferContext& c, int64_t rank) {
  Shape s;
  for (int64_t k = 0; k < rank; ++k) s.push_back(c.unknown_dim());
  return s;
}

// The product of dims[b, e): exact when all are known (or one is 0); a lone symbol among 1s
// stays that symbol; otherwise a fresh unknown dim.
int64_t dim_product(InferContext& c, const Shape& dims, size_t b, size_t e) {
  int64_t known = 1, symbol = 0;
  int symbols = 0;
  for (size_t k = b; k < e; ++k) {
    if (dims[k] == 0) return 0;
    if (dims[k] < 0) { ++symbols; symbol = dims[k]; }
    else known *= dims[k];
  }
  if (symbols == 0) return known;
  if (symbols == 1 && known == 1) return symbol;
  return c.unknown_dim();
}

// ---- passing int values on ----

// Collects the elements of a computed int64 value and publishes it on an output.
class IntsOut {
 public:
  void add(const Ints& src, size_t k) {
    int64_t x = src.v[k];
    values_.push_back(x);
    if (src.dims) {
      from_shape_ = true;
      if (x < 0) symbols_ = true;
    } else if (x < 0) {
      negative_literals_ = true;
    }
  }
  void add_all(const Ints& src) {
    for (size_t k = 0; k < src.v.size(); ++k) add(src, k);
  }
  void publish(InferContext& c, size_t out) const {
    if (out >= c.outputs.size()) return;
    ValueInfo& o = c.outputs[out];
    if (o.dtype != DType::Int64 || o.shape.size() > 1) return;
    int64_t n = static_cast<int64_t>(values_.size());
    if (o.shape.empty() ? n != 1 : o.shape[0] != n) return;
    if (symbols_ && negative_literals_) return;  // cannot be told apart: leave it unknown
    if (!from_shape_ || negative_literals_) {
      o.data = Tensor::from_vector(values_, o.shape);
    } else {
      o.shape_data = values_;
      o.has_shape_data = true;
    }
  }

 private:
  std::vector<int64_t> values_;
  bool from_shape_ = false, symbols_ = false, negative_literals_ = false;
};

// Passes an int64 input's values on unchanged (ops that only change the shape).
void forward_ints(InferContext& c, size_t in, size_t out) {
  if (c.dtype(in) != DType::Int64) return;
  std::optional<Ints> v = read_ints(c, in);
  if (!v || v->v.size() > kMaxShapeValues) return;
  IntsOut o;
  o.add_all(*v);
  o.publish(c, out);
}

std::vector<int64_t> normalize_axes(const InferContext& c, std::vector<int64_t> axes, int64_t rank) {
  std::vector<bool> seen(static_cast<size_t>(rank), false);
  for (int64_t& a : axes) {
    a = c.axis(a, rank);
    if (seen[a]) c.fail(cat("axis ", a, " appears more than once"));
    seen[a] = true;
  }
  return axes;
}

// ---- Reshape, Flatten, Squeeze, Unsqueeze, Transpose ----

void infer_reshape(InferContext& c) {
  c.expect_dtype(1, {DType::Int64});
  const Shape& in = c.shape(0);
  int64_t n = vector_length(c, 1, "shape");
  bool allowzero = c.node.attr_int("allowzero", 0) != 0;
  std::optional<Ints> target = read_ints(c, 1);
  if (!target) {
    c.set_output(0, c.dtype(0), unknown_dims(c, n));
    return;
  }
  if (static_cast<int64_t>(target->v.size()) != n)
    c.fail(cat("the shape input has ", target->v.size(), " values but shape ", c.dims(c.shape(1))));
  Shape out;
  int64_t infer_at = -1;
  bool literal_zero = false;
  for (size_t k = 0; k < target->v.size(); ++k) {
    int64_t x = target->v[k];
    if (target->dims && x < 0) {
      out.push_back(x);  // a symbolic dim from a Shape result
    } else if (x == -1) {
      if (infer_at >= 0) c.fail("the shape has more than one -1");
      infer_at = static_cast<int64_t>(k);
      out.push_back(0);  // filled below
    } else if (x == 0 && !allowzero) {
      if (k >= in.size())
        c.fail(cat("shape entry ", k, " is 0 (copy the input dim) but the input ", c.dims(in), " has rank ", in.size()));
      out.push_back(in[k]);
    } else if (x < 0) {
      c.fail(cat("invalid dim ", x, " at position ", k, " of the shape"));
    } else {
      literal_zero |= x == 0;
      out.push_back(x);
    }
  }
  if (allowzero && literal_zero && infer_at >= 0) c.fail("with allowzero=1 the shape may not hold both 0 and -1");

  // Element counts: known factors multiply, symbols present on both sides cancel.
  int64_t known_in = 1, known_out = 1;
  std::vector<int64_t> sym_in, sym_out;
  auto times = [&](int64_t a, int64_t b) {  // the target comes from the model: overflow is its error
    int64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r) || r > kMaxCount)
      c.fail(cat("the shape ", c.dims(out), " has too many elements (the product of its dims overflows 2^60)"));
    return r;
  };
  for (int64_t d : in) {
    if (d < 0) sym_in.push_back(d);
    else known_in = times(known_in, d);
  }
  for (size_t k = 0; k < out.size(); ++k) {
    if (static_cast<int64_t>(k) == infer_at) continue;
    if (out[k] < 0) sym_out.push_back(out[k]);
    else known_out = times(known_out, out[k]);
  }
  for (auto it = sym_out.begin(); it != sym_out.end();) {
    auto m = std::find(sym_in.begin(), sym_in.end(), *it);
    if (m != sym_in.end()) {
      sym_in.erase(m);
      it = sym_out.erase(it);
    } else {
      ++it;
    }
  }
  auto mismatch = [&] {
    std::string target_str;
    for (size_t k = 0; k < out.size(); ++k) {
      std::string d = static_cast<int64_t>(k) == infer_at ? "-1" : c.dims({out[k]});
      if (d.front() == '[') d = d.substr(1, d.size() - 2);
      target_str += (k ? ", " : "") + d;
    }
    c.fail(cat("reshape element count mismatch: input ", c.dims(in), " cannot be reshaped to [", target_str, "]"));
  };
  if (sym_in.empty() && sym_out.empty()) {
    if (infer_at >= 0) {
      if (known_out == 0) c.fail(cat("cannot infer the -1 dim of ", c.dims(out), ": the other dims multiply to 0"));
      if (known_in % known_out != 0) mismatch();
      out[infer_at] = known_in / known_out;
    } else if (known_in != known_out) {
      mismatch();
    }
  } else if (infer_at >= 0) {
    bool lone_symbol = sym_out.empty() && sym_in.size() == 1 && known_in == known_out;
    out[infer_at] = lone_symbol ? sym_in[0] : c.unknown_dim();
  }
  c.set_output(0, c.dtype(0), out);
  forward_ints(c, 0, 0);
}

void infer_flatten(InferContext& c) {
  const Shape& in = c.shape(0);
  int64_t r = c.rank(0), axis = c.node.attr_int("axis", 1);
  if (axis < -r || axis > r) c.fail(cat("axis ", axis, " is out of range for rank ", r));
  if (axis < 0) axis += r;
  size_t a = static_cast<size_t>(axis);
  c.set_output(0, c.dtype(0), {dim_product(c, in, 0, a), dim_product(c, in, a, in.size())});
}

void infer_squeeze(InferContext& c) {
  const Shape& in = c.shape(0);
  int64_t r = c.rank(0);
  std::optional<std::vector<int64_t>> axes = std::vector<int64_t>{};
  if (c.has_input(1)) {
    c.expect_dtype(1, {DType::Int64});
    if (c.rank(1) > 1) c.fail(cat("axes must be 1-D, got shape ", c.dims(c.shape(1))));
    axes = literal_ints(c, 1);
    if (!axes) {
      int64_t n = c.rank(1) == 0 ? 1 : vector_length(c, 1, "axes");
      c.set_output(0, c.dtype(0), unknown_dims(c, std::max<int64_t>(r - n, 0)));
      return;
    }
  }
  Shape out;
  if (axes->empty()) {  // squeeze every dim of size 1
    for (int64_t d : in)
      if (d != 1) out.push_back(d);
  } else {
    std::vector<int64_t> norm = normalize_axes(c, *axes, r);
    for (int64_t a : norm)
      if (in[a] >= 0 && in[a] != 1) c.fail(cat("cannot squeeze axis ", a, " of size ", in[a], " in ", c.dims(in)));
    for (int64_t k = 0; k < r; ++k)
      if (std::find(norm.begin(), norm.end(), k) == norm.end()) out.push_back(in[k]);
  }
  c.set_output(0, c.dtype(0), out);
  forward_ints(c, 0, 0);
}

void infer_unsqueeze(InferContext& c) {
  c.expect_dtype(1, {DType::Int64});
  if (c.rank(1) > 1) c.fail(cat("axes must be 1-D, got shape ", c.dims(c.shape(1))));
  const Shape& in = c.shape(0);
  int64_t r = c.rank(0);
  std::optional<std::vector<int64_t>> axes = literal_ints(c, 1);
  if (!axes) {
    int64_t n = c.rank(1) == 0 ? 1 : vector_length(c, 1, "axes");
    c.set_output(0, c.dtype(0), unknown_dims(c, r + n));
    return;
  }
  int64_t out_rank = r + static_cast<int64_t>(axes->size());
  std::vector<int64_t> norm = normalize_axes(c, *axes, out_rank);  // relative to the output rank
  Shape out;
  size_t next = 0;
  for (int64_t k = 0; k < out_rank; ++k) {
    if (std::find(norm.begin(), norm.end(), k) != norm.end()) out.push_back(1);
    else out.push_back(in[next++]);
  }
  c.set_output(0, c.dtype(0), out);
  forward_ints(c, 0, 0);
}

std::vector<int64_t> transpose_perm(const Node& n, int64_t rank) {
  std::vector<int64_t> perm = n.attr_ints("perm");
  if (!n.has_attr("perm"))
    for (int64_t k = rank - 1; k >= 0; --k) perm.push_back(k);
  return perm;
}

void infer_transpose(InferContext& c) {
  const Shape& in = c.shape(0);
  int64_t r = c.rank(0);
  std::vector<int64_t> perm = transpose_perm(c.node, r);
  if (static_cast<int64_t>(perm.size()) != r)
    c.fail(cat("perm has ", perm.size(), " entries but the input ", c.dims(in), " has rank ", r));
  std::vector<bool> seen(static_cast<size_t>(r), false);
  Shape out;
  for (int64_t p : perm) {
    if (p < 0 || p >= r || seen[p]) c.fail(cat("perm ", shape_str(perm), " is not a permutation of 0..", r - 1));
    seen[p] = true;
    out.push_back(in[p]);
  }
  c.set_output(0, c.dtype(0), out);
}

// ---- Concat, Split ----

void infer_concat(InferContext& c) {
  if (c.num_inputs() == 0) c.fail("needs at least one input");
  if (!c.node.has_attr("axis")) c.fail("the axis attribute is required");
  int64_t r = c.rank(0);
  if (r == 0) c.fail("cannot concatenate scalars");
  int64_t axis = c.axis(c.node.attr_int("axis", 0), r);
  Shape out = c.shape(0);
  int64_t total = 0;
  std::vector<int64_t> symbols;
  for (size_t i = 0; i < c.num_inputs(); ++i) {
    c.expect_same_dtype(0, i);
    const Shape& s = c.shape(i);
    if (static_cast<int64_t>(s.size()) != r)
      c.fail(cat("input ", i, " ", c.dims(s), " has rank ", s.size(), " but input 0 ", c.dims(c.shape(0)), " has rank ", r));
    for (int64_t k = 0; k < r; ++k) {
      if (k == axis) continue;
      if (out[k] < 0) out[k] = s[k];  // a symbol: take a known dim when an input has one
      else if (s[k] >= 0 && s[k] != out[k])
        c.fail(cat("input ", i, " ", c.dims(s), " does not match ", c.dims(c.shape(0)), " outside axis ", axis));
    }
    if (s[axis] < 0) symbols.push_back(s[axis]);
    else total += s[axis];
  }
  if (symbols.empty()) out[axis] = total;
  else out[axis] = symbols.size() == 1 && total == 0 ? symbols[0] : c.unknown_dim();
  c.set_output(0, c.dtype(0), out);

  if (c.dtype(0) == DType::Int64 && r == 1) {  // a shape assembled from parts
    IntsOut o;
    for (size_t i = 0; i < c.num_inputs(); ++i) {
      std::optional<Ints> v = read_ints(c, i);
      if (!v || v->v.size() > kMaxShapeValues) return;
      o.add_all(*v);
    }
    o.publish(c, 0);
  }
}

// The sizes along the axis of Split's outputs: from the split input, else `num_outputs` parts
// of ceil(dim / n) with a smaller last one (opset 18), else equal parts. Empty when unknown.
std::vector<int64_t> split_sizes(InferContext& c, int64_t dim, size_t n) {
  if (c.has_input(1)) {
    if (c.node.has_attr("num_outputs")) c.fail("takes either the split input or num_outputs, not both");
    c.expect_dtype(1, {DType::Int64});
    std::optional<std::vector<int64_t>> split = literal_ints(c, 1);
    if (!split) return {};
    if (split->size() != n) c.fail(cat("split has ", split->size(), " sizes for ", n, " outputs"));
    int64_t sum = 0;
    for (int64_t s : *split) {
      if (s < 0) c.fail(cat("split size ", s, " is negative"));
      sum += s;
    }
    if (dim >= 0 && sum != dim) c.fail(cat("split sizes add up to ", sum, " but the axis has size ", dim));
    return *split;
  }
  if (c.node.has_attr("num_outputs") && c.node.attr_int("num_outputs", 0) != static_cast<int64_t>(n))
    c.fail(cat("num_outputs is ", c.node.attr_int("num_outputs", 0), " but the node has ", n, " outputs"));
  if (dim < 0) return {};
  int64_t parts = static_cast<int64_t>(n);
  int64_t chunk = (dim + parts - 1) / parts;
  int64_t last = dim - chunk * (parts - 1);
  if (last < 0) c.fail(cat("cannot split an axis of size ", dim, " into ", n, " parts"));
  std::vector<int64_t> sizes(n, chunk);
  sizes.back() = last;
  return sizes;
}

void infer_split(InferContext& c) {
  size_t n = c.node.outputs.size();
  if (n == 0) c.fail("needs at least one output");
  const Shape& in = c.shape(0);
  int64_t r = c.rank(0);
  if (r == 0) c.fail("cannot split a scalar");
  int64_t axis = c.axis(c.node.attr_int("axis", 0), r);
  std::vector<int64_t> sizes = split_sizes(c, in[axis], n);
  for (size_t i = 0; i < n; ++i) {
    Shape s = in;
    s[axis] = sizes.empty() ? (n == 1 ? in[axis] : c.unknown_dim()) : sizes[i];
    c.set_output(i, c.dtype(0), s);
  }
}

// ---- Slice ----

// One sliced axis after ONNX's normalisation: the first index, the step and the length.
struct SliceAxis {
  int64_t start, step, length;
};

SliceAxis slice_axis(int64_t start, int64_t end, int64_t step, int64_t dim) {
  if (dim == 0) return {0, step, 0};
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  int64_t length;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    length = end > start ? (end - start + step - 1) / step : 0;
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    length = start > end ? (start - end - step - 1) / -step : 0;
  }
  return {start, step, length};
}

void infer_slice(InferContext& c) {
  const Shape& in = c.shape(0);
  int64_t r = c.rank(0);
  for (size_t i = 1; i <= 4; ++i)
    if (c.has_input(i)) {
      c.expect_dtype(i, {DType::Int64, DType::Int32});
      if (i >= 3) c.expect_same_dtype(1, i);
    }
  c.expect_same_dtype(1, 2);
  int64_t n = vector_length(c, 1, "starts");
  if (vector_length(c, 2, "ends") != n) c.fail("starts and ends differ in length");
  if (c.has_input(3) && vector_length(c, 3, "axes") != n) c.fail("axes and starts differ in length");
  if (c.has_input(4) && vector_length(c, 4, "steps") != n) c.fail("steps and starts differ in length");

  auto starts = literal_ints(c, 1), ends = literal_ints(c, 2);
  std::optional<std::vector<int64_t>> axes, steps;
  if (c.has_input(3)) axes = literal_ints(c, 3);
  else {
    axes = std::vector<int64_t>();
    for (int64_t k = 0; k < n; ++k) axes->push_back(k);
  }
  if (c.has_input(4)) steps = literal_ints(c, 4);
  else steps = std::vector<int64_t>(static_cast<size_t>(n), 1);
  if (!axes) {
    c.set_output(0, c.dtype(0), unknown_dims(c, r));
    return;
  }
  std::vector<int64_t> norm = normalize_axes(c, *axes, r);
  bool known = starts && ends && steps;
  if (steps)
    for (int64_t s : *steps)
      if (s == 0) c.fail("a step is 0");
  Shape out = in;
  std::vector<SliceAxis> sliced;
  for (size_t k = 0; k < norm.size(); ++k) {
    int64_t a = norm[k], dim = in[a];
    if (!known) { out[a] = c.unknown_dim(); continue; }
    int64_t start = (*starts)[k], end = (*ends)[k], step = (*steps)[k];
    if (dim < 0) {  // a symbolic dim survives only a slice that keeps all of it
      bool whole = start == 0 && step == 1 && end >= std::numeric_limits<int32_t>::max();
      out[a] = whole ? dim : c.unknown_dim();
      continue;
    }
    sliced.push_back(slice_axis(start, end, step, dim));
    out[a] = sliced.back().length;
  }
  c.set_output(0, c.dtype(0), out);

  if (c.dtype(0) == DType::Int64 && r == 1 && sliced.size() == 1) {  // a slice of a shape
    std::optional<Ints> v = read_ints(c, 0);
    if (!v || v->v.size() > kMaxShapeValues) return;
    IntsOut o;
    for (int64_t j = 0; j < sliced[0].length; ++j) o.add(*v, static_cast<size_t>(sliced[0].start + j * sliced[0].step));
    o.publish(c, 0);
  }
}

// ---- Gather, Expand ----

void infer_gather(InferContext& c) {
  c.expect_dtype(1, {DType::Int64, DType::Int32});
  const Shape& in = c.shape(0);
  int64_t r = c.rank(0);
  if (r == 0) c.fail("data must have rank >= 1");
  int64_t axis = c.axis(c.node.attr_int("axis", 0), r);
  Shape out(in.begin(), in.begin() + axis);
  for (int64_t d : c.shape(1)) out.push_back(d);
  out.insert(out.end(), in.begin() + axis + 1, in.end());
  c.set_output(0, c.dtype(0), out);

  std::optional<std::vector<int64_t>> idx;
  if (const Tensor* t = c.data(1)) idx = t->to_int64_vector();  // literal indices only
  if (!idx) return;
  int64_t dim = in[axis];
  if (dim >= 0)
    for (int64_t i : *idx)
      if (i < -dim || i >= dim) c.fail(cat("index ", i, " is out of range for axis ", axis, " of size ", dim));
  if (c.dtype(0) == DType::Int64 && r == 1 && dim >= 0) {  // picking dims out of a shape
    std::optional<Ints> v = read_ints(c, 0);
    if (!v || v->v.size() > kMaxShapeValues || idx->size() > kMaxShapeValues) return;
    IntsOut o;
    for (int64_t i : *idx) o.add(*v, static_cast<size_t>(i < 0 ? i + dim : i));
    o.publish(c, 0);
  }
}

void infer_expand(InferContext& c) {
  c.expect_dtype(1, {DType::Int64});
  const Shape& in = c.shape(0);
  int64_t n = vector_length(c, 1, "shape");
  std::optional<Ints> target = read_ints(c, 1);
  if (!target) {
    int64_t r = std::max<int64_t>(c.rank(0), n);
    Shape out;
    for (int64_t k = 0; k < r; ++k) {
      int64_t j = k - (r - c.rank(0));
      int64_t d = j >= 0 ? in[j] : 1;
      out.push_back(d >= 0 && d != 1 ? d : c.unknown_dim());  // a dim other than 1 stays
    }
    c.set_output(0, c.dtype(0), out);
    return;
  }
  if (!target->dims)
    for (int64_t d : target->v)
      if (d < 0) c.fail(cat("negative dim ", d, " in the shape ", shape_str(target->v)));
  c.set_output(0, c.dtype(0), broadcast_shapes(c, {in, target->v}));
}

// ---- Shape, Size, Constant, ConstantOfShape, Range ----

// Shape's [start, end) after clamping (opset 15).
std::pair<int64_t, int64_t> shape_range(const Node& n, int64_t rank) {
  auto clamp = [rank](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + rank : v, 0, rank); };
  int64_t b = clamp(n.attr_int("start", 0)), e = clamp(n.attr_int("end", rank));
  return {b, std::max(b, e)};
}

void infer_shape(InferContext& c) {
  const Shape& in = c.shape(0);
  auto [b, e] = shape_range(c.node, c.rank(0));
  c.set_output(0, DType::Int64, {e - b});
  if (c.outputs.empty()) return;
  c.outputs[0].shape_data.assign(in.begin() + b, in.begin() + e);
  c.outputs[0].has_shape_data = true;
}

void infer_size(InferContext& c) {
  c.set_output(0, DType::Int64, {});
  // Publish the element count when it is a number or a single symbol.
  int64_t known = 1, symbol = 0;
  int symbols = 0;
  for (int64_t d : c.shape(0)) {
    if (d < 0) { ++symbols; symbol = d; }
    else known *= d;
  }
  int64_t size;
  if (symbols == 0 || known == 0) size = known;
  else if (symbols == 1 && known == 1) size = symbol;
  else return;
  IntsOut o;
  o.add(Ints{{size}, true}, 0);
  o.publish(c, 0);
}

// The tensor a Constant node holds (value / value_float / value_floats / value_int / value_ints).
Tensor constant_value(const InferContext& c) {
  const Node& n = c.node;
  int count = 0;
  for (const char* k : {"value", "value_float", "value_floats", "value_int", "value_ints"}) count += n.has_attr(k);
  for (const char* k : {"sparse_value", "value_string", "value_strings"})
    if (n.has_attr(k)) c.fail(cat("attribute '", k, "' is not supported"));
  if (count != 1) c.fail(cat("needs exactly one value attribute, got ", count));
  if (n.has_attr("value")) {
    const Tensor* t = n.attr_tensor("value");
    if (!t || !t->defined()) c.fail("attribute 'value' must be a tensor");
    if (!is_supported_dtype(static_cast<int32_t>(t->dtype()))) c.fail(cat("unsupported dtype ", dtype_name(t->dtype())));
    return *t;
  }
  if (n.has_attr("value_float")) return Tensor::scalar<float>(static_cast<float>(n.attr_float("value_float", 0)));
  if (n.has_attr("value_int")) return Tensor::scalar<int64_t>(n.attr_int("value_int", 0));
  if (n.has_attr("value_ints")) {
    std::vector<int64_t> v = n.attr_ints("value_ints");
    return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
  }
  const Attribute& a = n.attrs.at("value_floats");
  if (a.kind != Attribute::Kind::Floats) c.fail("attribute 'value_floats' must be a list of floats");
  std::vector<float> v(a.floats.begin(), a.floats.end());
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

void infer_constant(InferContext& c) {
  Tensor t = constant_value(c);
  c.set_output(0, t.dtype(), t.shape());
  if (!c.outputs.empty()) c.outputs[0].data = t;
}

void infer_constant_of_shape(InferContext& c) {
  c.expect_dtype(0, {DType::Int64});
  int64_t n = vector_length(c, 0, "shape");
  DType dtype = DType::Float32;
  if (c.node.has_attr("value")) {
    const Tensor* v = c.node.attr_tensor("value");
    if (!v || v->numel() != 1) c.fail("attribute 'value' must be a one-element tensor");
    if (!is_supported_dtype(static_cast<int32_t>(v->dtype()))) c.fail(cat("unsupported dtype ", dtype_name(v->dtype())));
    dtype = v->dtype();
  }
  std::optional<Ints> shape = read_ints(c, 0);
  if (!shape) {
    c.set_output(0, dtype, unknown_dims(c, n));
    return;
  }
  if (!shape->dims)
    for (int64_t d : shape->v)
      if (d < 0) c.fail(cat("negative dim ", d, " in the shape ", shape_str(shape->v)));
  c.set_output(0, dtype, shape->v);
}

// Range's length max(ceil((limit - start) / delta), 0), computed in the inputs' type.
template <class T>
int64_t range_length(const InferContext& c, T start, T limit, T delta) {
  if (delta == T(0)) c.fail("delta is 0");
  if constexpr (std::is_floating_point_v<T>) {
    T n = std::ceil((limit - start) / delta);
    if (!(n < T(std::numeric_limits<int64_t>::max()))) c.fail("the range is too long");
    return n > T(0) ? static_cast<int64_t>(n) : 0;
  } else {
    int64_t diff = static_cast<int64_t>(limit) - static_cast<int64_t>(start), d = static_cast<int64_t>(delta);
    if (d > 0) return diff > 0 ? (diff + d - 1) / d : 0;
    return diff < 0 ? (-diff - d - 1) / -d : 0;
  }
}

void infer_range(InferContext& c) {
  c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Int32, DType::Int64});
  for (size_t i = 0; i < 3; ++i) {
    c.expect_same_dtype(0, i);
    const Shape& s = c.shape(i);
    if (!(s.empty() || (s.size() == 1 && s[0] == 1)))
      c.fail(cat("input ", i, " (start, limit, delta) must be a scalar, got shape ", c.dims(s)));
  }
  DType t = c.dtype(0);
  int64_t length = -1;
  if (is_floating(t)) {
    if (c.data(0) && c.data(1) && c.data(2)) {
      double s = c.data(0)->to_double_vector()[0], l = c.data(1)->to_double_vector()[0], d = c.data(2)->to_double_vector()[0];
      length = t == DType::Float32 ? range_length<float>(c, float(s), float(l), float(d)) : range_length<double>(c, s, l, d);
    }
  } else {
    auto s = literal_ints(c, 0), l = literal_ints(c, 1), d = literal_ints(c, 2);
    if (s && l && d) length = range_length<int64_t>(c, (*s)[0], (*l)[0], (*d)[0]);
  }
  c.set_output(0, t, {length >= 0 ? length : c.unknown_dim()});
}

// ---- internal gradient ops ----

// ConcatGrad(dy, x0, x1, ...): output i is the part of dy that came from x_i (x_i read only for
// its shape).
void infer_concat_grad(InferContext& c) {
  size_t n = c.num_inputs() - 1;
  if (c.num_inputs() < 2 || c.node.outputs.size() != n)
    c.fail(cat("needs dy and n inputs for n outputs, got ", c.num_inputs(), " inputs and ", c.node.outputs.size(), " outputs"));
  c.axis(c.node.attr_int("axis", 0), c.rank(0));
  for (size_t i = 0; i < n; ++i) {
    if (c.rank(i + 1) != c.rank(0)) c.fail(cat("input ", i + 1, " has another rank than dy"));
    c.set_output(i, c.dtype(0), c.shape(i + 1));
  }
}

// SplitGrad(dy0..dy{n-1}, y0..y{n-1}): the dys concatenated along axis, zeros for an omitted dy.
void infer_split_grad(InferContext& c) {
  if (c.num_inputs() < 2 || c.num_inputs() % 2 != 0) c.fail(cat("needs 2n inputs, got ", c.num_inputs()));
  size_t n = c.num_inputs() / 2;
  DType dtype = c.dtype(n);
  for (size_t i = 0; i < n; ++i)
    if (c.has_input(i)) {
      dtype = c.dtype(i);
      break;
    }
  int64_t r = c.rank(n);
  int64_t axis = c.axis(c.node.attr_int("axis", 0), r);
  Shape out = c.shape(n);
  int64_t total = 0;
  bool symbolic = false;
  for (size_t i = 0; i < n; ++i) {
    const Shape& s = c.shape(n + i);
    if (static_cast<int64_t>(s.size()) != r) c.fail(cat("y", i, " has rank ", s.size(), " but y0 has rank ", r));
    if (s[axis] < 0) symbolic = true;
    else total += s[axis];
  }
  out[axis] = symbolic ? (n == 1 ? out[axis] : c.unknown_dim()) : total;
  c.set_output(0, dtype, out);
}

void infer_float_grad_like(InferContext& c, size_t like) {
  c.expect_dtype(0, {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16});
  c.set_output(0, c.dtype(0), c.shape(like));
}

// ---- gradients ----

// dx = Reshape(dy, Shape(x)) for the ops that only change the shape. allowzero=1: a 0 in x's
// shape is a real 0, not "copy".
void reshape_back_grad(GradContext& g) {
  if (!g.wants(0)) return;
  Attributes a;
  a["allowzero"] = Attribute::of_int(1);
  g.set_dx(0, g.emit("Reshape", {g.dy(), g.shape_of(g.x(0))}, a));
}

void transpose_grad(GradContext& g) {
  std::vector<int64_t> perm = transpose_perm(g.node(), g.rank(g.x(0)));
  std::vector<int64_t> inverse(perm.size());
  for (size_t k = 0; k < perm.size(); ++k) inverse[perm[k]] = static_cast<int64_t>(k);
  Attributes a;
  a["perm"] = Attribute::of_ints(inverse);
  g.set_dx(0, g.emit("Transpose", {g.dy()}, a));
}

void concat_grad(GradContext& g) {
  const Node& n = g.node();
  std::vector<int> inputs = {g.dy()};
  for (size_t i = 0; i < n.inputs.size(); ++i) inputs.push_back(g.x(i));
  Attributes a;
  a["axis"] = Attribute::of_int(n.attr_int("axis", 0));
  std::vector<int> dxs = g.emit_n("ConcatGrad", inputs, static_cast<int>(n.inputs.size()), a, "otter");
  for (size_t i = 0; i < dxs.size(); ++i) g.set_dx(i, dxs[i]);
}

void split_grad(GradContext& g) {
  const Node& n = g.node();
  std::vector<int> inputs;
  for (size_t i = 0; i < n.outputs.size(); ++i) inputs.push_back(g.dy(i));
  for (size_t i = 0; i < n.outputs.size(); ++i) inputs.push_back(g.y(i));
  Attributes a;
  a["axis"] = Attribute::of_int(n.attr_int("axis", 0));
  g.set_dx(0, g.emit("SplitGrad", inputs, a, "otter"));
}

void slice_grad(GradContext& g) {
  std::vector<int> inputs = {g.dy(), g.x(0), g.x(1), g.x(2), g.x(3), g.x(4)};
  while (inputs.back() < 0) inputs.pop_back();  // drop omitted trailing axes / steps
  g.set_dx(0, g.emit("SliceGrad", inputs, {}, "otter"));
}

void gather_grad(GradContext& g) {
  Attributes a;
  a["axis"] = Attribute::of_int(g.node().attr_int("axis", 0));
  g.set_dx(0, g.emit("GatherGrad", {g.dy(), g.x(1), g.x(0)}, a, "otter"));
}

void expand_grad(GradContext& g) { g.set_dx(0, g.sum_to_shape_of(g.dy(), g.x(0))); }

OpDef def(const std::string& op, int64_t since, InferFn infer, GradFn grad = {}, std::vector<int> diff = {}) {
  OpDef d;
  d.op_type = op;
  d.since_version = since;
  d.infer = std::move(infer);
  d.gradient = std::move(grad);
  d.differentiable_inputs = std::move(diff);
  return d;
}

OpDef internal(const std::string& op, InferFn infer, int kernel_type_input = 0) {
  OpDef d = def(op, 1, std::move(infer));
  d.domain = "otter";
  d.kernel_type_input = kernel_type_input;
  return d;
}

}  // namespace

void register_shape_ops(OpRegistry& r) {
  r.add(def("Reshape", 5, infer_reshape, reshape_back_grad, {0}));
  r.add(def("Flatten", 1, infer_flatten, reshape_back_grad, {0}));
  r.add(def("Squeeze", 13, infer_squeeze, reshape_back_grad, {0}));
  r.add(def("Unsqueeze", 13, infer_unsqueeze, reshape_back_grad, {0}));
  r.add(def("Transpose", 1, infer_transpose, transpose_grad, {0}));
  r.add(def("Concat", 4, infer_concat, concat_grad));
  r.add(def("Split", 13, infer_split, split_grad, {0}));
  r.add(def("Slice", 10, infer_slice, slice_grad, {0}));
  {
    OpDef d = def("Gather", 1, infer_gather, gather_grad, {0});
    d.kernel_type_input = 0;
    r.add(d);
  }
  r.add(def("Expand", 8, infer_expand, expand_grad, {0}));
  r.add(def("Shape", 1, infer_shape));
  r.add(def("Size", 1, infer_size));
  // Ops that make a tensor: the output's dtype picks the kernel.
  auto maker = [&r](const char* op, int64_t since, InferFn infer) {
    OpDef d = def(op, since, std::move(infer));
    d.kernel_type_input = -1;
    r.add(d);
  };
  maker("Constant", 1, infer_constant);
  maker("ConstantOfShape", 9, infer_constant_of_shape);
  maker("Range", 11, infer_range);

  // ---- internal ops used by gradients ----
  r.add(internal("ConcatGrad", infer_concat_grad));
  r.add(internal("SplitGrad", infer_split_grad, -1));  // dy0 may be omitted: dispatch on the output
  r.add(internal("SliceGrad", [](InferContext& c) { infer_float_grad_like(c, 1); }));
  r.add(internal("GatherGrad", [](InferContext& c) {
    c.expect_dtype(1, {DType::Int64, DType::Int32});
    infer_float_grad_like(c, 2);
  }));

  // Traits (runtime/ops/op.h).
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand"}) r.at("", op).views = {ViewTrait{0, 0, {}}};
  r.at("", "Gather").index_inputs = {IndexInput{1, 0, "axis", 0, false}};
  r.at("otter", "SliceGrad").shape_only = shape_only_inputs({1});
  r.at("otter", "GatherGrad").shape_only = shape_only_inputs({2});
  r.at("otter", "ConcatGrad").shape_only = shape_only_from(1);  // (dy, x0, x1, ...)
  r.at("otter", "SplitGrad").shape_only = [](const Node& n, size_t i) { return i >= n.inputs.size() / 2; };  // (dy0.., y0..)
}

}  // namespace otter
