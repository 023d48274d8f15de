// The Einsum equation parser shared by the op definition (runtime/ops/einsum.cpp: inference and the
// gradient builder) and the kernels (kernels/cpu/einsum.cpp, kernels/cuda/einsum.cu). An equation
// such as "bij, bjk -> bik" or "...ii->...i" becomes one list of label ids per operand and one for
// the output: letters a-z are 0-25, A-Z are 26-51, and the dims an ellipsis stands for get the ids
// 52, 53, ... (right-aligned across operands, numpy-style, so an operand whose ellipsis covers
// fewer dims gets the last ones). Without "->" the output is the ellipsis dims followed by the
// letters that appear exactly once, in character order (numpy's implicit mode). Whitespace is
// ignored. Also the per-label walk of the kernels' general loops (summed labels, label strides).
// Host-only code: the kernels parse once per call, outside any device loop.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace otter::einsum {

constexpr int kLetters = 52;  // ids of the 52 letters; ellipsis dims come after

inline int letter_id(char c) {
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= 'A' && c <= 'Z') return 26 + (c - 'A');
  return -1;
}
inline char letter_char(int id) { return id < 26 ? static_cast<char>('a' + id) : static_cast<char>('A' + id - 26); }

struct Equation {
  std::vector<std::vector<int>> inputs;  // label ids per operand, one per dim
  std::vector<int> output;               // label ids of the output, one per dim
  int ellipsis_dims = 0;                 // how many dims "..." stands for (the most over operands)
  bool has_ellipsis = false;
  std::string error;                     // empty when the equation is valid for the given ranks

  int num_labels() const { return kLetters + ellipsis_dims; }
  // Whether an operand uses a label more than once (a diagonal, as in "ii->i").
  bool has_repeated_label(size_t operand) const {
    const std::vector<int>& l = inputs[operand];
    for (size_t a = 0; a < l.size(); ++a)
      for (size_t b = a + 1; b < l.size(); ++b)
        if (l[a] == l[b]) return true;
    return false;
  }
};

namespace detail {

// One term ("b...ij"): its letters and where an ellipsis sits (-1 for none).
struct Term {
  std::vector<int> letters;
  int ellipsis_at = -1;
};

inline bool parse_term(const std::string& s, Term& t, std::string& error) {
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '.') {
      if (s.compare(i, 3, "...") != 0) { error = "a '.' that is not part of '...' in '" + s + "'"; return false; }
      if (t.ellipsis_at >= 0) { error = "more than one '...' in '" + s + "'"; return false; }
      t.ellipsis_at = static_cast<int>(t.letters.size());
      i += 3;
      continue;
    }
    int id = letter_id(s[i]);
    if (id < 0) { error = std::string("invalid character '") + s[i] + "' in the term '" + s + "'"; return false; }
    t.letters.push_back(id);
    ++i;
  }
  return true;
}

}  // namespace detail

// Parses `equation` for operands of the given ranks.
inline Equation parse(const std::string& equation, const std::vector<int64_t>& ranks) {
  Equation eq;
  std::string s;
  for (char c : equation)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') s += c;
  std::string lhs = s, rhs;
  bool explicit_output = false;
  size_t arrow = s.find("->");
  if (arrow != std::string::npos) {
    lhs = s.substr(0, arrow);
    rhs = s.substr(arrow + 2);
    explicit_output = true;
    if (rhs.find("->") != std::string::npos) { eq.error = "more than one '->'"; return eq; }
  }
  std::vector<std::string> terms;
  for (size_t b = 0;;) {
    size_t e = lhs.find(',', b);
    terms.push_back(lhs.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  if (terms.size() != ranks.size()) {
    eq.error = "the equation has " + std::to_string(terms.size()) + " input terms but the node has " +
               std::to_string(ranks.size()) + " inputs";
    return eq;
  }
  std::vector<detail::Term> parsed(terms.size());
  std::vector<int64_t> ell(terms.size(), 0);
  for (size_t k = 0; k < terms.size(); ++k) {
    if (!detail::parse_term(terms[k], parsed[k], eq.error)) return eq;
    int64_t letters = static_cast<int64_t>(parsed[k].letters.size());
    if (parsed[k].ellipsis_at >= 0) {
      eq.has_ellipsis = true;
      ell[k] = ranks[k] - letters;
      if (ell[k] < 0) {
        eq.error = "the term '" + terms[k] + "' has more letters than input " + std::to_string(k) + " has dims (" +
                   std::to_string(ranks[k]) + ")";
        return eq;
      }
    } else if (letters != ranks[k]) {
      eq.error = "the term '" + terms[k] + "' has " + std::to_string(letters) + " subscripts but input " +
                 std::to_string(k) + " has rank " + std::to_string(ranks[k]);
      return eq;
    }
    eq.ellipsis_dims = std::max(eq.ellipsis_dims, static_cast<int>(ell[k]));
  }
  const int E = eq.ellipsis_dims;
  auto expand = [E](const detail::Term& t, int64_t e, std::vector<int>& out) {
    for (size_t i = 0; i < t.letters.size(); ++i) {
      if (static_cast<int>(i) == t.ellipsis_at)
        for (int64_t j = 0; j < e; ++j) out.push_back(kLetters + E - static_cast<int>(e) + static_cast<int>(j));
      out.push_back(t.letters[i]);
    }
    if (t.ellipsis_at == static_cast<int>(t.letters.size()))
      for (int64_t j = 0; j < e; ++j) out.push_back(kLetters + E - static_cast<int>(e) + static_cast<int>(j));
  };
  eq.inputs.resize(terms.size());
  std::vector<int> count(kLetters, 0);
  for (size_t k = 0; k < terms.size(); ++k) {
    expand(parsed[k], ell[k], eq.inputs[k]);
    for (int id : parsed[k].letters) ++count[id];
  }
  if (explicit_output) {
    detail::Term out;
    if (!detail::parse_term(rhs, out, eq.error)) return eq;
    if (out.ellipsis_at >= 0 && !eq.has_ellipsis) { eq.error = "the output has '...' but no input has"; return eq; }
    for (size_t i = 0; i < out.letters.size(); ++i) {
      int id = out.letters[i];
      if (count[id] == 0) {
        eq.error = std::string("the output subscript '") + letter_char(id) + "' appears in no input";
        return eq;
      }
      for (size_t j = 0; j < i; ++j)
        if (out.letters[j] == id) {
          eq.error = std::string("the output subscript '") + letter_char(id) + "' appears more than once";
          return eq;
        }
    }
    expand(out, E, eq.output);
  } else {
    for (int j = 0; j < E; ++j) eq.output.push_back(kLetters + j);
    std::vector<char> once;
    for (int id = 0; id < kLetters; ++id)
      if (count[id] == 1) once.push_back(letter_char(id));
    std::sort(once.begin(), once.end());  // character order: 'A'-'Z' before 'a'-'z', as numpy
    for (char c : once) eq.output.push_back(letter_id(c));
  }
  return eq;
}

// The size of every label from the operands' shapes (known dims): the largest size among its
// occurrences; every occurrence must have that size or 1 (broadcast). Returns an error or "".
inline std::string label_sizes(const Equation& eq, const std::vector<std::vector<int64_t>>& shapes,
                               std::vector<int64_t>& sizes) {
  sizes.assign(static_cast<size_t>(eq.num_labels()), -1);
  for (size_t k = 0; k < eq.inputs.size(); ++k)
    for (size_t d = 0; d < eq.inputs[k].size(); ++d) {
      int64_t& s = sizes[static_cast<size_t>(eq.inputs[k][d])];
      int64_t n = shapes[k][d];
      if (s < 0 || s == 1) s = n;
      else if (n != 1 && n != s) {
        int id = eq.inputs[k][d];
        std::string label = id < kLetters ? std::string(1, letter_char(id)) : "... dim " + std::to_string(id - kLetters);
        return "subscript '" + label + "' has size " + std::to_string(s) + " in one place and " + std::to_string(n) +
               " in input " + std::to_string(k);
      }
    }
  return "";
}

// The labels the operands carry and the output lacks (the summed ones), in order of first
// occurrence; `n_labels` is the number of label ids.
inline std::vector<int> summed_labels(const std::vector<std::vector<int>>& inputs, const std::vector<int>& output,
                                      size_t n_labels) {
  std::vector<bool> in_out(n_labels, false), seen(n_labels, false);
  for (int id : output) in_out[static_cast<size_t>(id)] = true;
  std::vector<int> sum_labels;
  for (const std::vector<int>& labels : inputs)
    for (int id : labels)
      if (!in_out[static_cast<size_t>(id)] && !seen[static_cast<size_t>(id)]) {
        seen[static_cast<size_t>(id)] = true;
        sum_labels.push_back(id);
      }
  return sum_labels;
}

// An operand's element stride along every label (0 for labels it lacks): a repeated label adds
// its strides (a diagonal); a dim of size 1 where the label is larger adds none (broadcast).
inline std::vector<int64_t> label_strides(const std::vector<int64_t>& shape, const std::vector<int>& labels,
                                          const std::vector<int64_t>& sizes) {
  std::vector<int64_t> strides(sizes.size(), 0);
  int64_t stride = 1;
  for (size_t d = labels.size(); d-- > 0;) {
    size_t id = static_cast<size_t>(labels[d]);
    if (shape[d] == sizes[id]) strides[id] += stride;
    stride *= shape[d];
  }
  return strides;
}

}  // namespace otter::einsum
