// Import-time expansion of ONNX Attention into primitive ops (see expand_functions.h).
//
// Attention (opsets 23, 24 and 25+) follows the operator's specification and the reference in
// onnx/reference/ops/op_attention.py:
//   3-D inputs [B, S, H*D] become [B, H, S, D] (Reshape [0, 0, H, -1], Transpose 0 2 1 3);
//   past_key/past_value are concatenated before K/V along the sequence axis (present_*);
//   Q and K are both scaled by sqrt(scale) (default scale 1/sqrt(head size));
//   grouped-query attention repeats each K/V head q_heads/kv_heads times ([h0, h0, h1, h1 ...]);
//   scores = (Q*s) @ (K*s)^T, then softcap*tanh(scores/softcap) when softcap > 0;
//   the additive bias: a bool attn_mask becomes 0 (attend) / -inf, a float one is added as is,
//   a mask shorter than the key sequence is padded with -inf; is_causal allows key j for query i
//   iff j <= i + offset (offset = past length with past_key, nonpad_kv_seqlen - Sq per batch with
//   nonpad_kv_seqlen, else 0); opset 25's left/right windows and nonpad_kv_seqlen's padding
//   bound the allowed keys the same way; all of these are built from Range/LessOrEqual/And/Where
//   and fold into constants once a plan knows the sizes;
//   Softmax over the keys (in softmax_precision when given); a query row whose bias is -inf for
//   every key (possible only with a mask, a window or nonpad_kv_seqlen) yields zeros, computed
//   without NaN (the row's scores are replaced by 0 before Softmax, and the row zeroed after);
//   Y = P @ V, back to [B, S, H*Dv] for 3-D inputs; qk_matmul_output is the requested
//   intermediate (mode 0 raw scores, 1 after softcap, 2 after the bias, 3 the probabilities).
// Dtypes and ranks come from an IR-level inference of the nodes feeding the Attention node, run
// just before it is expanded (nodes in topological order, so an Attention fed by another one
// sees it already expanded). Sizes that are symbolic there are read at run time through shape
// ops only (Shape, Concat, Reshape, Slice...: no arithmetic on sizes, which a plan cannot always
// evaluate before running). The new nodes take the Attention node's place in the node list.
#include "onnx_import/expand_functions.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "onnx_import/node_expander.h"
#include "runtime/exec/infer.h"

namespace otter {
namespace {

// A size that is neither known nor a graph symbol (symbols are -1, -2, ...).
constexpr int64_t kUnknown = std::numeric_limits<int64_t>::min();
bool known(int64_t d) { return d >= 0; }

class AttentionExpander : NodeExpander {
 public:
  AttentionExpander(Graph& g, int node_id, const std::vector<ValueInfo>& info) : NodeExpander(g, node_id, info) {}

  void run();

 private:
  DType t1_ = DType::Undefined;
  size_t first_new_ = 0;

  int int_scalar(int64_t v) { return constant(Tensor::scalar<int64_t>(v)); }
  int scalar(double v, DType t) { return constant(Tensor::scalar<double>(v).cast(t)); }
  // Dim `axis` of value v as a 1-D [1] int64 tensor: a constant when `static_dim` is known.
  int dim1(int v, int64_t axis, int64_t static_dim) {
    return known(static_dim) ? ints({static_dim}) : shape_slice(v, axis, axis + 1);
  }
  // The same as a 0-D int64 scalar.
  int dim0(int v, int64_t axis, int64_t static_dim) {
    if (known(static_dim)) return int_scalar(static_dim);
    return emit("Squeeze", {dim1(v, axis, static_dim), ints({0})});
  }
  int transpose(int v, std::vector<int64_t> perm) {
    Attributes a;
    a["perm"] = Attribute::of_ints(std::move(perm));
    return emit("Transpose", {v}, std::move(a));
  }
  int cast(int v, DType to) {
    Attributes a;
    a["to"] = Attribute::of_int(static_cast<int64_t>(to));
    return emit("Cast", {v}, std::move(a));
  }

  // [B, S, H*D] -> [B, H, S, D].
  int to_heads(int v, int64_t heads, Shape& shape) {
    const Shape& s = vi(v).shape;
    int64_t hidden = s[2];
    if (known(hidden) && hidden % heads != 0)
      invalid(cat("input '", g_.values[v].name, "' of shape ", dims(s), " has a hidden size not divisible by ", heads,
                  " heads"));
    shape = {s[0], heads, s[1], known(hidden) ? hidden / heads : kUnknown};
    int r = emit("Reshape", {v, ints({0, 0, heads, -1})});
    return transpose(r, {0, 2, 1, 3});
  }

  int concat(const std::vector<int>& parts, int64_t axis) {
    return emit("Concat", parts, {{"axis", Attribute::of_int(axis)}});
  }
  int shape_slice(int v, int64_t start, int64_t end) {
    Attributes a;
    a["start"] = Attribute::of_int(start);
    a["end"] = Attribute::of_int(end);
    return emit("Shape", {v}, std::move(a));
  }

  // Repeats each head `reps` times along axis 1 ([h0, h0, h1, h1, ...]); reps_dim is the
  // run-time [1] count when reps is not known (kUnknown).
  int repeat_heads(int v, const Shape& shape, int64_t reps, int reps_dim) {
    int u = emit("Unsqueeze", {v, ints({2})});  // [B, Hkv, 1, S, D]
    int expand_shape = known(reps) ? ints({1, 1, reps, 1, 1}) : concat({ints({1, 1}), reps_dim, ints({1, 1})}, 0);
    int e = emit("Expand", {u, expand_shape});  // [B, Hkv, reps, S, D]
    int target = known(shape[2]) && known(shape[3]) ? ints({0, -1, shape[2], shape[3]})
                                                    : concat({ints({0, -1}), shape_slice(v, 2, 4)}, 0);
    return emit("Reshape", {e, target});
  }
};

DType softmax_dtype(int64_t code, bool* ok) {
  *ok = true;
  switch (code) {
    case 1: return DType::Float32;
    case 10: return DType::Float16;
    case 11: return DType::Float64;
    case 16: return DType::BFloat16;
    default: *ok = false; return DType::Undefined;
  }
}

void AttentionExpander::run() {
  const int64_t opset = g_.opset("");
  first_new_ = g_.nodes.size();

  // ---- attributes ----
  std::set<std::string> allowed = {"is_causal", "kv_num_heads", "q_num_heads", "qk_matmul_output_mode",
                                   "scale",     "softcap",      "softmax_precision"};
  if (opset >= 25) allowed.insert({"left_window_size", "right_window_size"});
  for (auto& kv : n_.attrs)
    if (!allowed.count(kv.first))
      unsupported(cat("attribute '", kv.first, "' is not an attribute of Attention in this opset"));
  const int64_t is_causal = n_.attr_int("is_causal", 0);
  if (is_causal != 0 && is_causal != 1) invalid(cat("attribute 'is_causal' must be 0 or 1, got ", is_causal));
  const int64_t mode = n_.attr_int("qk_matmul_output_mode", 0);
  if (mode < 0 || mode > 3) unsupported(cat("attribute 'qk_matmul_output_mode' = ", mode, " is not 0, 1, 2 or 3"));
  const double softcap = n_.attr_float("softcap", 0.0);
  if (!std::isfinite(softcap)) invalid("attribute 'softcap' must be finite");
  const int64_t left = n_.attr_int("left_window_size", -1), right = n_.attr_int("right_window_size", -1);
  if (left < -1) invalid(cat("attribute 'left_window_size' must be -1 or >= 0, got ", left));
  if (right < -1) invalid(cat("attribute 'right_window_size' must be -1 or >= 0, got ", right));
  const bool has_scale = n_.has_attr("scale");
  const double scale = n_.attr_float("scale", 0.0);
  if (has_scale && !(scale >= 0 && std::isfinite(scale)))
    unsupported(cat("attribute 'scale' = ", scale, " is not supported (it must be finite and >= 0: Q and K are both "
                    "scaled by sqrt(scale))"));

  // ---- inputs ----
  const size_t max_inputs = opset >= 24 ? 7 : 6;
  if (n_.inputs.size() > max_inputs)
    invalid(cat("has ", n_.inputs.size(), " inputs; Attention-", opset >= 24 ? 24 : 23, " takes at most ", max_inputs));
  if (n_.outputs.size() > 4) invalid(cat("has ", n_.outputs.size(), " outputs; Attention has at most 4"));
  const int q = n_.input(0), k = n_.input(1), v = n_.input(2), mask = n_.input(3), past_k = n_.input(4),
            past_v = n_.input(5), nonpad = n_.input(6);
  if (q < 0 || k < 0 || v < 0) invalid("inputs Q, K and V are required");
  auto out = [&](size_t i) { return i < n_.outputs.size() ? n_.outputs[i] : -1; };
  const int y_out = out(0), pk_out = out(1), pv_out = out(2), qk_out = out(3);
  if (y_out < 0) invalid("output Y is required");

  t1_ = vi(q).dtype;
  if (!is_floating(t1_)) invalid(cat("input Q has dtype ", dtype_name(t1_), "; expected a floating dtype"));
  if (vi(k).dtype != t1_)
    invalid(cat("input K has dtype ", dtype_name(vi(k).dtype), " but Q has ", dtype_name(t1_), " (both are T1)"));
  const DType t2 = vi(v).dtype;
  if (!is_floating(t2)) invalid(cat("input V has dtype ", dtype_name(t2), "; expected a floating dtype"));
  const int64_t rank = static_cast<int64_t>(vi(q).shape.size());
  if (rank != 3 && rank != 4) invalid(cat("input Q has shape ", dims(vi(q).shape), "; expected rank 3 or 4"));
  if (static_cast<int64_t>(vi(k).shape.size()) != rank || static_cast<int64_t>(vi(v).shape.size()) != rank)
    invalid(cat("Q, K and V must have the same rank (3 or 4), got ", dims(vi(q).shape), ", ", dims(vi(k).shape), " and ",
                dims(vi(v).shape)));
  if ((past_k < 0) != (past_v < 0)) invalid("inputs past_key and past_value must be given together");
  if (nonpad >= 0 && past_k >= 0) invalid("input nonpad_kv_seqlen cannot be combined with past_key/past_value");
  if (past_k >= 0) {
    if (vi(past_k).dtype != t1_ || vi(past_v).dtype != t2)
      invalid("past_key must have the dtype of K and past_value the dtype of V");
    if (vi(past_k).shape.size() != 4 || vi(past_v).shape.size() != 4)
      invalid(cat("past_key and past_value must be 4-D [batch, kv_heads, past_length, head_size], got ",
                  dims(vi(past_k).shape), " and ", dims(vi(past_v).shape)));
  }
  if (nonpad >= 0 && (vi(nonpad).dtype != DType::Int64 || vi(nonpad).shape.size() != 1))
    invalid(cat("input nonpad_kv_seqlen must be 1-D int64 [batch], got ", dtype_name(vi(nonpad).dtype), " ",
                dims(vi(nonpad).shape)));
  if (mask >= 0) {
    DType md = vi(mask).dtype;
    if (md != DType::Bool && !is_floating(md))
      unsupported(cat("attn_mask of dtype ", dtype_name(md), " is not supported (use a bool mask, True = attend, or a ",
                      "float mask added to the scores)"));
    size_t mr = vi(mask).shape.size();
    if (mr < 1 || mr > 4) invalid(cat("attn_mask has shape ", dims(vi(mask).shape), "; expected rank 1 to 4"));
  }
  DType sp = t1_;
  if (n_.has_attr("softmax_precision")) {
    bool ok;
    sp = softmax_dtype(n_.attr_int("softmax_precision", 1), &ok);
    if (!ok)
      unsupported(cat("attribute 'softmax_precision' = ", n_.attr_int("softmax_precision", 1),
                      " is not 1 (FLOAT), 10 (FLOAT16), 11 (DOUBLE) or 16 (BFLOAT16)"));
  }

  // ---- [B, H, S, D] views of Q, K, V ----
  Shape qs, ks, vs;
  int q4 = q, k4 = k, v4 = v;
  int64_t hq, hkv;
  if (rank == 3) {
    if (!n_.has_attr("q_num_heads") || !n_.has_attr("kv_num_heads"))
      invalid("3-D inputs need the attributes 'q_num_heads' and 'kv_num_heads'");
    hq = n_.attr_int("q_num_heads", 0);
    hkv = n_.attr_int("kv_num_heads", 0);
    if (hq <= 0) invalid(cat("attribute 'q_num_heads' must be positive, got ", hq));
    if (hkv <= 0) invalid(cat("attribute 'kv_num_heads' must be positive, got ", hkv));
    q4 = to_heads(q, hq, qs);
    k4 = to_heads(k, hkv, ks);
    v4 = to_heads(v, hkv, vs);
  } else {
    qs = vi(q).shape;
    ks = vi(k).shape;
    vs = vi(v).shape;
    hq = qs[1];
    hkv = ks[1];
    auto check_heads = [&](const char* attr, int64_t dim) {
      if (!n_.has_attr(attr)) return;
      int64_t h = n_.attr_int(attr, 0);
      if (known(dim) && h != dim)
        invalid(cat("attribute '", attr, "' = ", h, " does not match the 4-D inputs' head count ", dim));
    };
    check_heads("q_num_heads", hq);
    check_heads("kv_num_heads", hkv);
  }
  auto same_or_unknown = [](int64_t a, int64_t b) { return !known(a) || !known(b) || a == b; };
  if (!same_or_unknown(qs[0], ks[0]) || !same_or_unknown(qs[0], vs[0]))
    invalid(cat("Q, K and V have different batch sizes: ", dims(vi(q).shape), ", ", dims(vi(k).shape), ", ",
                dims(vi(v).shape)));
  if (!same_or_unknown(qs[3], ks[3]))
    invalid(cat("Q and K have different head sizes (", dims(vi(q).shape), " and ", dims(vi(k).shape), ")"));
  if (!same_or_unknown(ks[1], vs[1]) || !same_or_unknown(ks[2], vs[2]))
    invalid(cat("K and V must have the same heads and sequence length (", dims(vi(k).shape), " and ",
                dims(vi(v).shape), ")"));
  if ((known(hq) && hq == 0) || (known(hkv) && hkv == 0))
    invalid(cat("the query and key/value head counts must be positive (", hq, " and ", hkv, ")"));
  if (known(hq) && known(hkv) && hq % hkv != 0)
    invalid(cat("the query heads (", hq, ") must be a multiple of the key/value heads (", hkv, ")"));

  // ---- the key/value cache ----
  int kc = k4, vc = v4;
  Shape kcs = ks, vcs = vs;
  int64_t past_len = kUnknown;
  if (past_k >= 0) {
    const Shape& pks = vi(past_k).shape;
    const Shape& pvs = vi(past_v).shape;
    if (!same_or_unknown(pks[1], ks[1]) || !same_or_unknown(pks[3], ks[3]) || !same_or_unknown(pvs[1], vs[1]) ||
        !same_or_unknown(pvs[3], vs[3]) || !same_or_unknown(pks[2], pvs[2]))
      invalid(cat("past_key ", dims(pks), " and past_value ", dims(pvs), " do not match K ", dims(ks), " and V ",
                  dims(vs), " ([batch, kv_heads, length, head_size])"));
    past_len = pks[2];
    Attributes a;
    a["axis"] = Attribute::of_int(2);
    kc = emit("Concat", {past_k, k4}, a, pk_out);
    vc = emit("Concat", {past_v, v4}, a, pv_out);
    kcs[2] = known(past_len) && known(ks[2]) ? past_len + ks[2] : kUnknown;
    vcs[2] = kcs[2];
  } else {
    if (pk_out >= 0) emit("Identity", {k4}, {}, pk_out);
    if (pv_out >= 0) emit("Identity", {v4}, {}, pv_out);
  }

  // ---- scaling ----
  int sqrt_scale;
  if (has_scale) {
    sqrt_scale = scalar(std::sqrt(scale), t1_);
  } else if (known(qs[3])) {
    if (qs[3] == 0) invalid("the head size is 0");
    sqrt_scale = scalar(std::sqrt(1.0 / std::sqrt(static_cast<double>(qs[3]))), t1_);
  } else {
    int d = cast(dim0(q4, 3, kUnknown), t1_);
    sqrt_scale = emit("Pow", {d, scalar(-0.25, t1_)});
  }
  int qsc = emit("Mul", {q4, sqrt_scale});
  int ksc = emit("Mul", {kc, sqrt_scale});

  // ---- grouped-query attention ----
  int kr = ksc, vr = vc;
  bool same_heads = hq == hkv;  // equal sizes or the same symbol
  if (!same_heads) {
    int64_t reps = known(hq) && known(hkv) ? hq / hkv : kUnknown;
    int reps_dim = -1;
    if (!known(reps)) {
      // Hq / Hkv without arithmetic on sizes (a plan reads sizes through shape ops only, and
      // cannot always evaluate Div on them before running): the second dim of a [Hq] tensor
      // reshaped to [Hkv, -1].
      int heads = emit("Range", {int_scalar(0), dim0(q4, 1, hq), int_scalar(1)});
      int grouped = emit("Reshape", {heads, concat({dim1(kc, 1, hkv), ints({-1})}, 0)});
      reps_dim = shape_slice(grouped, 1, 2);
    }
    if (reps != 1) {
      kr = repeat_heads(ksc, kcs, reps, reps_dim);
      vr = repeat_heads(vc, vcs, reps, reps_dim);
    }
  }
  if (t2 != t1_) vr = cast(vr, t1_);

  // ---- scores ----
  int scores = emit("MatMul", {qsc, transpose(kr, {0, 1, 3, 2})});  // [B, Hq, Sq, Skv]
  int qk_mode_value[4] = {scores, scores, scores, -1};
  if (softcap > 0) {
    int c = scalar(softcap, t1_);
    scores = emit("Mul", {emit("Tanh", {emit("Div", {scores, c})}), c});
    qk_mode_value[1] = qk_mode_value[2] = scores;
  }

  // ---- the bias ----
  const double inf = std::numeric_limits<double>::infinity();
  int bias = -1;
  bool guard = false;
  const int64_t skv_static = kcs[2];
  if (mask >= 0) {
    guard = true;
    int mb = mask;
    DType md = vi(mask).dtype;
    if (md == DType::Bool) mb = emit("Where", {mask, scalar(0.0, t1_), scalar(-inf, t1_)});
    else if (md != t1_) mb = cast(mask, t1_);
    const Shape& ms = vi(mask).shape;
    int64_t mr = static_cast<int64_t>(ms.size());
    int64_t m = ms.back();
    if (known(m) && known(skv_static)) {
      if (m > skv_static)
        invalid(cat("attn_mask ", dims(ms), " has more keys (", m, ") than K (", skv_static, " with the past)"));
      if (m < skv_static) {
        std::vector<int64_t> pads(static_cast<size_t>(2 * mr), 0);
        pads.back() = skv_static - m;
        mb = emit("Pad", {mb, ints(pads), scalar(-inf, t1_)});
      }
    } else if (m != skv_static) {  // not the same symbol either: compare at run time
      // Append Skv columns of -inf and keep the first Skv: only shape ops on sizes (see
      // the reps above). A mask longer than the keys is cut to them.
      int skv1 = dim1(kc, 2, skv_static);
      int block = emit("Expand", {scalar(-inf, t1_), concat({shape_slice(mb, 0, mr - 1), skv1}, 0)});
      int wide = concat({mb, block}, -1);
      mb = emit("Slice", {wide, ints({0}), skv1, ints({-1})});
    }
    bias = mb;
  }
  std::vector<int> allowed_parts;
  if (is_causal || left >= 0 || right >= 0 || nonpad >= 0) {
    int sq = dim0(q4, 2, qs[2]);
    int skv = dim0(kc, 2, skv_static);
    int zero = int_scalar(0), one = int_scalar(1);
    int i = emit("Unsqueeze", {emit("Range", {zero, sq, one}), ints({1})});  // [Sq, 1]
    int j = emit("Range", {zero, skv, one});                                // [Skv]
    int nonpad4 = nonpad >= 0 ? emit("Reshape", {nonpad, ints({-1, 1, 1, 1})}) : -1;  // [B, 1, 1, 1]
    // The absolute position of query i: i + offset.
    int pos = i;
    if (past_k >= 0) pos = emit("Add", {i, dim0(past_k, 2, past_len)});
    else if (nonpad >= 0) pos = emit("Add", {i, emit("Sub", {nonpad4, sq})});  // [B, 1, Sq, 1]
    if (is_causal) allowed_parts.push_back(emit("LessOrEqual", {j, pos}));
    if (left >= 0) allowed_parts.push_back(emit("LessOrEqual", {emit("Sub", {pos, j}), int_scalar(left)}));
    if (right >= 0) allowed_parts.push_back(emit("LessOrEqual", {emit("Sub", {j, pos}), int_scalar(right)}));
    if (nonpad >= 0) allowed_parts.push_back(emit("Less", {j, nonpad4}));
    if (left >= 0 || right >= 0 || nonpad >= 0) guard = true;
  }
  if (!allowed_parts.empty()) {
    int allowed = allowed_parts[0];
    for (size_t p = 1; p < allowed_parts.size(); ++p) allowed = emit("And", {allowed, allowed_parts[p]});
    int structural = emit("Where", {allowed, scalar(0.0, t1_), scalar(-inf, t1_)});
    bias = bias >= 0 ? emit("Add", {bias, structural}) : structural;
  }
  if (bias >= 0) {
    scores = emit("Add", {scores, bias});
    qk_mode_value[2] = scores;
  }

  // ---- softmax ----
  if (sp != t1_) scores = cast(scores, sp);
  int fully_masked = -1;
  if (guard) {
    Attributes keep;
    keep["keepdims"] = Attribute::of_int(1);
    int row_max = emit("ReduceMax", {bias, ints({-1})}, keep);
    fully_masked = emit("Equal", {row_max, scalar(-inf, t1_)});  // [..., Sq, 1]
    scores = emit("Where", {fully_masked, scalar(0.0, sp), scores});
  }
  int probs = emit("Softmax", {scores}, {{"axis", Attribute::of_int(-1)}});
  if (guard) probs = emit("Where", {fully_masked, scalar(0.0, sp), probs});
  if (sp != t1_) probs = cast(probs, t1_);
  qk_mode_value[3] = probs;
  if (qk_out >= 0) emit("Identity", {qk_mode_value[mode]}, {}, qk_out);

  // ---- output ----
  if (rank == 4) {
    emit("MatMul", {probs, vr}, {}, y_out);
  } else {
    int y4 = emit("MatMul", {probs, vr});
    emit("Reshape", {transpose(y4, {0, 2, 1, 3}), ints({0, 0, -1})}, {}, y_out);
  }

  // The emitted nodes (appended) take the Attention node's place in the node list, so that the
  // list stays in the model's order; the nodes after it move, and their outputs' producers with them.
  OTTER_CHECK(g_.nodes.size() > first_new_, n_.describe(), ": the expansion emitted no node");
  auto at = g_.nodes.begin() + id_;
  std::rotate(at + 1, g_.nodes.begin() + static_cast<std::ptrdiff_t>(first_new_), g_.nodes.end());
  g_.nodes.erase(at);
  for (size_t i = static_cast<size_t>(id_); i < g_.nodes.size(); ++i)
    for (int o : g_.nodes[i].outputs)
      if (o >= 0) g_.values[static_cast<size_t>(o)].producer = static_cast<int>(i);
}

bool is_attention(const Node& n) { return n.domain.empty() && n.op_type == "Attention"; }

}  // namespace

void expand_functions(Graph& g) {
  bool any = false, any_attention = false;
  for (const Node& n : g.nodes) {
    any_attention = any_attention || is_attention(n);
    any = any || is_attention(n) || is_rnn_node(n);
  }
  if (!any) return;
  if (any_attention && g.opset("") < 23)
    OTTER_FAIL_KIND(Unsupported, "the model uses Attention with ONNX opset ", g.opset(""),
                    "; Attention is an operator of opset 23 and later");
  std::map<int, ValueInfo> inputs;
  for (int v : g.inputs) {
    ValueInfo vi;
    vi.dtype = g.values[v].dtype;
    vi.shape = g.values[v].shape;
    inputs[v] = vi;
  }
  InferOptions options;
  options.symbolic = true;
  // Floating initializers (weights, perhaps trained) are not folded into constants here: only
  // the inputs' types and sizes are wanted. Integer ones (Reshape targets, axes) are read.
  for (int v : g.initializers)
    if (is_floating(g.values[v].dtype)) options.variables.insert(v);
  for (;;) {
    // The first Attention (or LSTM/GRU/RNN) node in topological order (so that one fed by another
    // sees it expanded); node ids change with each expansion.
    int id = -1;
    for (int n : g.topo_order())
      if (is_attention(g.nodes[n]) || is_rnn_node(g.nodes[n])) { id = n; break; }
    if (id < 0) break;
    std::vector<ValueInfo> info;
    options.only_nodes_for.clear();
    for (int v : g.nodes[id].inputs)
      if (v >= 0) options.only_nodes_for.insert(v);
    try {
      info = infer_graph(g, inputs, options);
    } catch (const Error& e) {
      throw Error(cat("expanding ", g.nodes[id].describe(), ": inferring the types of its inputs failed: ", e.what()),
                  e.kind());
    }
    if (is_attention(g.nodes[id])) AttentionExpander(g, id, info).run();
    else expand_rnn_node(g, id, info);  // onnx_import/expand_rnn.cpp
  }
}

}  // namespace otter
