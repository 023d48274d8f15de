// The add_loss pass: appends a scalar loss to a forward graph. Either the graph already computes
// its loss (kind "none": a named scalar output), or Otter appends one on a named output with a new
// label input: cross_entropy (SoftmaxCrossEntropyLoss: integer labels, class axis 1, extra dims,
// ignore_index, mean|sum), mse, l1, bce_with_logits (mean|sum; labels with the output's shape
// and dtype).
#pragma once
#include <optional>
#include <string>

#include "runtime/ir/graph.h"

namespace otter {

struct LossSpec {
  std::string kind = "none";       // none | cross_entropy | mse | l1 | bce_with_logits
  std::string output;              // the graph output the loss reads (default: the first output)
  std::string label = "label";     // the name of the new label input
  std::string reduction = "mean";  // mean | sum
  std::optional<int64_t> ignore_index;  // cross_entropy only
};

struct LossInfo {
  int loss = -1;   // scalar loss value
  int label = -1;  // the new label input, -1 for kind "none"
};

LossInfo add_loss(Graph& g, const LossSpec& spec);

}  // namespace otter
