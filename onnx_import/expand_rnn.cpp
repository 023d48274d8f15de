// Import-time expansion of ONNX LSTM, GRU and RNN (default domain, the semantics of opsets 7 to 22)
// into an unrolled graph of primitive ops (see expand_functions.h), so that autodiff, the precision
// policy (MatMul lowered, activations per the policy table) and every backend apply unchanged.
//
// The sequence length must be static (known from X's shape after an IR-level inference of the
// nodes feeding the node): the node becomes one group of nodes per time step and direction. The
// batch may be symbolic. A symbolic sequence length is an Unsupported error naming the node.
//
// Per direction d (bidirectional: d = 0 forward, 1 reverse; outputs stacked on num_directions):
//   X (layout 1: [batch, seq, input], transposed to [seq, batch, input]) is multiplied once by
//   W[d]^T for all steps, plus the bias that does not depend on the state (Wb + Rb; for GRU with
//   linear_before_reset=1, Rb's h part stays inside the step); then steps t = 0..S-1 (reverse:
//   S-1..0), with H, C kept as [1, batch, hidden]:
//     RNN:  H = f(clip(x_t + H R^T))
//     GRU:  zr = f(clip(x_zr + H R_zr^T)); z, r = split(zr)
//           h = g(clip(x_h + (r*H) R_h^T))              (linear_before_reset = 0, Rbh in x_h)
//           h = g(clip(x_h + r*(H R_h^T + Rbh)))         (linear_before_reset = 1)
//           H = h + z*(H - h)                            (= (1-z)*h + z*H)
//     LSTM: i, o, f, c = split(x_t + H R^T)              (gate order iofc)
//           i = f(clip(i + Pi*C)); f = input_forget ? 1 - i : f(clip(f + Pf*C)); c = g(clip(c))
//           C = f*C + i*c; o = f(clip(o + Po*C)); H = o*h(C)
//   (clip applies to every activation's input, as in onnxruntime). With sequence_lens, a step
//   t >= len[b] keeps batch b's state and writes zeros to Y (Where on a [1, batch, 1] mask
//   Less(t, len)); for reverse this processes each sequence reversed within its own length. Y_h
//   (Y_c) is the state after the last step, i.e. at each sequence's last valid step.
// Activations: Sigmoid, Tanh, Relu, HardSigmoid, LeakyRelu, Elu, Softplus (Otter ops), Affine,
// ScaledTanh, Softsign and ThresholdedRelu (composed of Mul/Add/Tanh/Abs/Div/Greater/Where);
// names are case-insensitive. A list of one direction's activations is used for both directions
// of a bidirectional node. activation_alpha/beta are consumed in order by the activations that
// take them (as onnxruntime does); a missing value takes the ONNX operator's default.
//
// Memory: like a primitive-kernel implementation, the unrolled graph keeps every step's gates
// and states for the backward pass: O(seq x batch x gates x hidden) per direction (gates = 4
// for LSTM, 3 for GRU, 1 for RNN), plus X W^T for all steps; the plan's arena reuses them once
// their gradients are computed.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "onnx_import/expand_functions.h"
#include "onnx_import/node_expander.h"
#include "runtime/exec/infer.h"

namespace otter {
namespace {

bool known(int64_t d) { return d >= 0; }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

enum class Cell { Lstm, Gru, Rnn };

struct Activation {
  std::string name;  // lower case
  double alpha = 0, beta = 0;
};

// Whether the activation takes alpha / beta, and the ONNX operator's defaults.
struct ActivationSpec {
  const char* name;
  bool uses_alpha, uses_beta;
  double alpha, beta;
};
const ActivationSpec kActivations[] = {
    {"sigmoid", false, false, 0, 0},     {"tanh", false, false, 0, 0},        {"relu", false, false, 0, 0},
    {"hardsigmoid", true, true, 0.2, 0.5}, {"leakyrelu", true, false, 0.01, 0}, {"elu", true, false, 1.0, 0},
    {"softplus", false, false, 0, 0},    {"softsign", false, false, 0, 0},    {"affine", true, true, 1.0, 0.0},
    {"scaledtanh", true, true, 1.0, 1.0}, {"thresholdedrelu", true, false, 1.0, 0},
};

class RnnExpander : NodeExpander {
 public:
  RnnExpander(Graph& g, int node_id, const std::vector<ValueInfo>& info) : NodeExpander(g, node_id, info) {}

  void run();

 private:
  Cell cell_ = Cell::Rnn;
  DType t_ = DType::Undefined;
  int64_t hidden_ = 0;
  bool has_clip_ = false;
  double clip_ = 0;


  int scalar(double v) { return constant(Tensor::scalar<double>(v).cast(t_)); }
  int transpose(int v, std::vector<int64_t> perm, int out = -1) {
    Attributes a;
    a["perm"] = Attribute::of_ints(std::move(perm));
    return emit("Transpose", {v}, std::move(a), out);
  }
  std::vector<int> split(int v, int64_t axis, const std::vector<int64_t>& sizes) {
    if (sizes.size() == 1) return {v};
    return emit_n("Split", {v, ints(sizes)}, static_cast<int>(sizes.size()), {{"axis", Attribute::of_int(axis)}});
  }
  int concat(const std::vector<int>& parts, int64_t axis) {
    if (parts.size() == 1) return parts[0];
    return emit("Concat", parts, {{"axis", Attribute::of_int(axis)}});
  }
  int squeeze0(int v) { return emit("Squeeze", {v, ints({0})}); }
  int clip(int v) { return has_clip_ ? emit("Clip", {v, scalar(-clip_), scalar(clip_)}) : v; }
  int act(const Activation& a, int x);
  // Splits a [num_directions, ...] input into [1, ...] per direction (-1s when absent).
  std::vector<int> per_direction(int v, int dirs) {
    if (v < 0) return std::vector<int>(static_cast<size_t>(dirs), -1);
    return split(v, 0, std::vector<int64_t>(static_cast<size_t>(dirs), 1));
  }
  void check_shape(int v, const char* what, const Shape& want) const {
    if (v < 0) return;
    const Shape& s = vi(v).shape;
    bool ok = s.size() == want.size();
    for (size_t i = 0; ok && i < s.size(); ++i) ok = !known(s[i]) || !known(want[i]) || s[i] == want[i];
    if (!ok) invalid(cat("input ", what, " has shape ", dims(s), "; expected ", dims(want)));
  }
  void check_dtype(int v, const char* what) const {
    if (v >= 0 && vi(v).dtype != t_)
      invalid(cat("input ", what, " has dtype ", dtype_name(vi(v).dtype), " but X has ", dtype_name(t_), " (both are T)"));
  }
};

int RnnExpander::act(const Activation& a, int x) {
  const std::string& n = a.name;
  if (n == "sigmoid") return emit("Sigmoid", {x});
  if (n == "tanh") return emit("Tanh", {x});
  if (n == "relu") return emit("Relu", {x});
  if (n == "softplus") return emit("Softplus", {x});
  if (n == "hardsigmoid")
    return emit("HardSigmoid", {x}, {{"alpha", Attribute::of_float(a.alpha)}, {"beta", Attribute::of_float(a.beta)}});
  if (n == "leakyrelu") return emit("LeakyRelu", {x}, {{"alpha", Attribute::of_float(a.alpha)}});
  if (n == "elu") return emit("Elu", {x}, {{"alpha", Attribute::of_float(a.alpha)}});
  if (n == "softsign") return emit("Div", {x, emit("Add", {emit("Abs", {x}), scalar(1.0)})});
  if (n == "affine") return emit("Add", {emit("Mul", {x, scalar(a.alpha)}), scalar(a.beta)});
  if (n == "scaledtanh") return emit("Mul", {emit("Tanh", {emit("Mul", {x, scalar(a.beta)})}), scalar(a.alpha)});
  if (n == "thresholdedrelu") return emit("Where", {emit("Greater", {x, scalar(a.alpha)}), x, scalar(0.0)});
  OTTER_FAIL("unreachable activation ", n);
}

void RnnExpander::run() {
  const size_t first_new = g_.nodes.size();
  const std::string& op = n_.op_type;
  cell_ = op == "LSTM" ? Cell::Lstm : op == "GRU" ? Cell::Gru : Cell::Rnn;
  const int64_t gates = cell_ == Cell::Lstm ? 4 : cell_ == Cell::Gru ? 3 : 1;
  const size_t acts_per_dir = cell_ == Cell::Lstm ? 3 : cell_ == Cell::Gru ? 2 : 1;

  // ---- attributes ----
  std::set<std::string> allowed = {"activation_alpha", "activation_beta", "activations", "clip",
                                   "direction",        "hidden_size",     "layout"};
  if (cell_ == Cell::Lstm) allowed.insert("input_forget");
  if (cell_ == Cell::Gru) allowed.insert("linear_before_reset");
  for (auto& kv : n_.attrs)
    if (!allowed.count(kv.first)) unsupported(cat("attribute '", kv.first, "' is not an attribute of ", op));
  const std::string direction = n_.attr_string("direction", "forward");
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional")
    invalid(cat("attribute 'direction' is \"", direction, "\"; expected forward, reverse or bidirectional"));
  const int dirs = direction == "bidirectional" ? 2 : 1;
  const int64_t layout = n_.attr_int("layout", 0);
  if (layout != 0 && layout != 1) invalid(cat("attribute 'layout' must be 0 or 1, got ", layout));
  const int64_t input_forget = n_.attr_int("input_forget", 0);
  if (input_forget != 0 && input_forget != 1) invalid(cat("attribute 'input_forget' must be 0 or 1, got ", input_forget));
  const int64_t lbr = n_.attr_int("linear_before_reset", 0);
  if (lbr != 0 && lbr != 1) invalid(cat("attribute 'linear_before_reset' must be 0 or 1, got ", lbr));
  has_clip_ = n_.has_attr("clip");
  clip_ = n_.attr_float("clip", 0.0);
  if (has_clip_ && !(clip_ > 0)) invalid(cat("attribute 'clip' must be positive, got ", clip_));

  std::vector<std::string> names;
  if (n_.has_attr("activations")) names = n_.attrs.at("activations").strings;
  else if (cell_ == Cell::Lstm) names = {"Sigmoid", "Tanh", "Tanh"};
  else if (cell_ == Cell::Gru) names = {"Sigmoid", "Tanh"};
  else names = {"Tanh"};
  if (dirs == 2 && names.size() == acts_per_dir) {
    std::vector<std::string> twice = names;
    twice.insert(twice.end(), names.begin(), names.end());
    names = twice;
  }
  if (names.size() != acts_per_dir * static_cast<size_t>(dirs))
    invalid(cat("attribute 'activations' has ", names.size(), " entries; ", op, " with direction ", direction,
                " takes ", acts_per_dir * static_cast<size_t>(dirs), " (", acts_per_dir, " per direction)"));
  std::vector<double> alphas, betas;
  if (n_.has_attr("activation_alpha")) alphas = n_.attrs.at("activation_alpha").floats;
  if (n_.has_attr("activation_beta")) betas = n_.attrs.at("activation_beta").floats;
  std::vector<Activation> acts;
  size_t next_alpha = 0, next_beta = 0;
  for (const std::string& name : names) {
    Activation a;
    a.name = lower(name);
    const ActivationSpec* spec = nullptr;
    for (const ActivationSpec& s : kActivations)
      if (a.name == s.name) spec = &s;
    if (!spec)
      unsupported(cat("activation '", name, "' is not supported (supported: Sigmoid, Tanh, Relu, HardSigmoid, ",
                      "LeakyRelu, Elu, Softplus, Softsign, Affine, ScaledTanh, ThresholdedRelu)"));
    a.alpha = spec->alpha;
    a.beta = spec->beta;
    if (spec->uses_alpha && next_alpha < alphas.size()) a.alpha = alphas[next_alpha++];
    if (spec->uses_beta && next_beta < betas.size()) a.beta = betas[next_beta++];
    acts.push_back(a);
  }

  // ---- inputs ----
  const size_t max_inputs = cell_ == Cell::Lstm ? 8 : 6;
  const size_t max_outputs = cell_ == Cell::Lstm ? 3 : 2;
  if (n_.inputs.size() > max_inputs) invalid(cat("has ", n_.inputs.size(), " inputs; ", op, " takes at most ", max_inputs));
  if (n_.outputs.size() > max_outputs)
    invalid(cat("has ", n_.outputs.size(), " outputs; ", op, " has at most ", max_outputs));
  const int x = n_.input(0), w = n_.input(1), r = n_.input(2), b = n_.input(3), lens = n_.input(4),
            h0 = n_.input(5), c0 = cell_ == Cell::Lstm ? n_.input(6) : -1, p = cell_ == Cell::Lstm ? n_.input(7) : -1;
  if (x < 0 || w < 0 || r < 0) invalid("inputs X, W and R are required");
  auto out = [&](size_t i) { return i < n_.outputs.size() ? n_.outputs[i] : -1; };
  const int y_out = out(0), yh_out = out(1), yc_out = out(2);

  t_ = vi(x).dtype;
  if (!is_floating(t_)) invalid(cat("input X has dtype ", dtype_name(t_), "; expected a floating dtype"));
  for (auto [v, what] : {std::pair<int, const char*>{w, "W"}, {r, "R"}, {b, "B"}, {h0, "initial_h"},
                         {c0, "initial_c"}, {p, "P"}})
    check_dtype(v, what);
  const Shape& xs = vi(x).shape;
  if (xs.size() != 3) invalid(cat("input X has shape ", dims(xs), "; expected rank 3"));
  const int64_t seq = xs[layout ? 1 : 0], batch = xs[layout ? 0 : 1], in_size = xs[2];
  if (!known(seq))
    unsupported(cat("the sequence length of input X (shape ", dims(xs), ", layout ", layout, ") is not static: ", op,
                    " is expanded at import into one group of nodes per time step, so the sequence length must be "
                    "known when the model is loaded (export the model with a fixed sequence length)"));
  if (seq == 0) unsupported("a sequence length of 0 is not supported");
  hidden_ = n_.attr_int("hidden_size", -1);
  if (!n_.has_attr("hidden_size")) {
    const Shape& rs = vi(r).shape;
    if (rs.size() == 3 && known(rs[2])) hidden_ = rs[2];
    else unsupported(cat("attribute 'hidden_size' is absent and R's shape ", dims(rs), " does not give it"));
  }
  if (hidden_ <= 0) invalid(cat("attribute 'hidden_size' must be positive, got ", hidden_));
  const int64_t H = hidden_, GH = gates * hidden_;
  check_shape(w, "W", {dirs, GH, in_size});
  check_shape(r, "R", {dirs, GH, H});
  check_shape(b, "B", {dirs, 2 * GH});
  check_shape(p, "P", {dirs, 3 * H});
  const Shape state = layout ? Shape{batch, dirs, H} : Shape{dirs, batch, H};
  check_shape(h0, "initial_h", state);
  check_shape(c0, "initial_c", state);
  if (lens >= 0) {
    DType ld = vi(lens).dtype;
    if (ld != DType::Int32 && ld != DType::Int64)
      invalid(cat("input sequence_lens has dtype ", dtype_name(ld), "; expected int32"));
    check_shape(lens, "sequence_lens", {batch});
  }

  // ---- shared operands ----
  const int xt = layout ? transpose(x, {1, 0, 2}) : x;  // [S, B, I]
  const int h0t = h0 >= 0 && layout ? transpose(h0, {1, 0, 2}) : h0;  // [dirs, B, H]
  const int c0t = c0 >= 0 && layout ? transpose(c0, {1, 0, 2}) : c0;
  int zeros_state = -1;  // [1, B, H]
  if (h0 < 0 || (cell_ == Cell::Lstm && c0 < 0)) {
    int shape = known(batch) ? ints({1, batch, H})
                             : concat({ints({1}), emit("Shape", {xt}, {{"start", Attribute::of_int(1)},
                                                                       {"end", Attribute::of_int(2)}}),
                                       ints({H})},
                                      0);
    zeros_state = emit("Expand", {scalar(0.0), shape});
  }
  int mask_lens = -1;  // [1, B, 1] int64
  if (lens >= 0) {
    int l = lens;
    if (vi(lens).dtype != DType::Int64) {
      Attributes a;
      a["to"] = Attribute::of_int(static_cast<int64_t>(DType::Int64));
      l = emit("Cast", {lens}, std::move(a));
    }
    mask_lens = emit("Reshape", {l, ints({1, -1, 1})});
  }
  const std::vector<int> ws = per_direction(w, dirs), rs = per_direction(r, dirs), bs = per_direction(b, dirs),
                         ps = per_direction(p, dirs), h0s = per_direction(h0t, dirs), c0s = per_direction(c0t, dirs);
  const int zero = scalar(0.0);
  const int one = (cell_ == Cell::Lstm && input_forget) ? scalar(1.0) : -1;

  std::vector<int> y_dirs, yh_dirs, yc_dirs;
  for (int d = 0; d < dirs; ++d) {
    const bool reverse = direction == "reverse" || d == 1;
    const Activation* a = &acts[static_cast<size_t>(d) * acts_per_dir];
    // Input projection for all steps, with the state-independent bias.
    int wt = transpose(squeeze0(ws[d]), {1, 0});  // [I, GH]
    int xw = emit("MatMul", {xt, wt});            // [S, B, GH]
    int rb_h = -1;                                // GRU, linear_before_reset: Rb's h part, [1, H]
    if (bs[d] >= 0) {
      std::vector<int> wr = split(bs[d], 1, {GH, GH});  // Wb, Rb: [1, GH]
      int bias;
      if (cell_ == Cell::Gru && lbr) {
        std::vector<int> rb = split(wr[1], 1, {2 * H, H});
        rb_h = rb[1];
        bias = emit("Add", {wr[0], concat({rb[0], emit("Expand", {zero, ints({1, H})})}, 1)});
      } else {
        bias = emit("Add", {wr[0], wr[1]});
      }
      xw = emit("Add", {xw, bias});
    }
    std::vector<int> xsteps = split(xw, 0, std::vector<int64_t>(static_cast<size_t>(seq), 1));  // [1, B, GH] each
    // Recurrent weights, transposed: [H, GH] (GRU, linear_before_reset = 0: [H, 2H] and [H, H]).
    int r_sq = squeeze0(rs[d]);
    int rt = -1, rt_zr = -1, rt_h = -1;
    if (cell_ == Cell::Gru && !lbr) {
      std::vector<int> parts = split(r_sq, 0, {2 * H, H});
      rt_zr = transpose(parts[0], {1, 0});
      rt_h = transpose(parts[1], {1, 0});
    } else {
      rt = transpose(r_sq, {1, 0});
    }
    int pi = -1, po = -1, pf = -1;
    if (ps[d] >= 0) {
      std::vector<int> pp = split(ps[d], 1, {H, H, H});  // [1, H] each, order i, o, f
      pi = pp[0], po = pp[1], pf = pp[2];
    }
    int h = h0s[d] >= 0 ? h0s[d] : zeros_state;  // [1, B, H]
    int c = cell_ == Cell::Lstm ? (c0s[d] >= 0 ? c0s[d] : zeros_state) : -1;
    std::vector<int> ys(static_cast<size_t>(seq), -1);
    for (int64_t k = 0; k < seq; ++k) {
      const int64_t t = reverse ? seq - 1 - k : k;
      const int xt_step = xsteps[static_cast<size_t>(t)];
      int hn, cn = -1;
      if (cell_ == Cell::Rnn) {
        hn = act(a[0], clip(emit("Add", {xt_step, emit("MatMul", {h, rt})})));
      } else if (cell_ == Cell::Gru) {
        std::vector<int> xp = split(xt_step, 2, {2 * H, H});  // x_zr, x_h
        int zr, hh = -1;
        if (!lbr) {
          zr = emit("Add", {xp[0], emit("MatMul", {h, rt_zr})});
        } else {
          std::vector<int> hp = split(emit("MatMul", {h, rt}), 2, {2 * H, H});
          zr = emit("Add", {xp[0], hp[0]});
          hh = hp[1];
        }
        std::vector<int> zr_parts = split(act(a[0], clip(zr)), 2, {H, H});
        int z = zr_parts[0], rg = zr_parts[1];
        int pre;
        if (!lbr) {
          pre = emit("Add", {xp[1], emit("MatMul", {emit("Mul", {rg, h}), rt_h})});
        } else {
          int hr = rb_h >= 0 ? emit("Add", {hh, rb_h}) : hh;
          pre = emit("Add", {xp[1], emit("Mul", {rg, hr})});
        }
        int cand = act(a[1], clip(pre));
        hn = emit("Add", {cand, emit("Mul", {z, emit("Sub", {h, cand})})});
      } else {
        std::vector<int> gp = split(emit("Add", {xt_step, emit("MatMul", {h, rt})}), 2, {H, H, H, H});
        int gi = gp[0], go = gp[1], gf = gp[2], gc = gp[3];
        if (pi >= 0) gi = emit("Add", {gi, emit("Mul", {pi, c})});
        int i = act(a[0], clip(gi));
        int f;
        if (input_forget) {
          f = emit("Sub", {one, i});
        } else {
          if (pf >= 0) gf = emit("Add", {gf, emit("Mul", {pf, c})});
          f = act(a[0], clip(gf));
        }
        int cc = act(a[1], clip(gc));
        cn = emit("Add", {emit("Mul", {f, c}), emit("Mul", {i, cc})});
        if (po >= 0) go = emit("Add", {go, emit("Mul", {po, cn})});
        int o = act(a[0], clip(go));
        hn = emit("Mul", {o, act(a[2], cn)});
      }
      if (mask_lens >= 0) {
        int m = emit("Less", {constant(Tensor::scalar<int64_t>(t)), mask_lens});  // [1, B, 1]
        if (y_out >= 0) ys[static_cast<size_t>(t)] = emit("Where", {m, hn, zero});
        h = emit("Where", {m, hn, h});
        if (cn >= 0) c = emit("Where", {m, cn, c});
      } else {
        ys[static_cast<size_t>(t)] = hn;
        h = hn;
        c = cn;
      }
    }
    if (y_out >= 0) y_dirs.push_back(emit("Unsqueeze", {concat(ys, 0), ints({1})}));  // [S, 1, B, H]
    yh_dirs.push_back(h);
    yc_dirs.push_back(c);
  }

  // ---- outputs ----
  if (y_out >= 0) {
    int y = concat(y_dirs, 1);  // [S, dirs, B, H]
    if (layout) transpose(y, {2, 0, 1, 3}, y_out);
    else emit("Identity", {y}, {}, y_out);
  }
  auto state_out = [&](const std::vector<int>& parts, int o) {
    if (o < 0) return;
    int s = concat(parts, 0);  // [dirs, B, H]
    if (layout) transpose(s, {1, 0, 2}, o);
    else emit("Identity", {s}, {}, o);
  };
  state_out(yh_dirs, yh_out);
  if (cell_ == Cell::Lstm) state_out(yc_dirs, yc_out);

  // The emitted nodes (appended) take the RNN node's place in the node list (see expand_functions.cpp).
  OTTER_CHECK(g_.nodes.size() > first_new, n_.describe(), ": the expansion emitted no node");
  auto at = g_.nodes.begin() + id_;
  std::rotate(at + 1, g_.nodes.begin() + static_cast<std::ptrdiff_t>(first_new), g_.nodes.end());
  g_.nodes.erase(at);
  for (size_t i = static_cast<size_t>(id_); i < g_.nodes.size(); ++i)
    for (int o : g_.nodes[i].outputs)
      if (o >= 0) g_.values[static_cast<size_t>(o)].producer = static_cast<int>(i);
}

}  // namespace

bool is_rnn_node(const Node& n) {
  return n.domain.empty() && (n.op_type == "LSTM" || n.op_type == "GRU" || n.op_type == "RNN");
}

void expand_rnn_node(Graph& g, int node_id, const std::vector<ValueInfo>& info) {
  RnnExpander(g, node_id, info).run();
}

}  // namespace otter
