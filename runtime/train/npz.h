// NumPy .npy/.npz input and output, the data format of the CLI and the tests: an .npz holds one
// array per graph input (and the labels). Reads stored and deflated members (zlib), ZIP64
// included; writes stored members. Errors name the file, the member and the problem.
#pragma once
#include <map>
#include <string>

#include "runtime/core/tensor.h"

namespace otter {

std::map<std::string, Tensor> read_npz(const std::string& path);
void write_npz(const std::string& path, const std::map<std::string, Tensor>& arrays);
Tensor parse_npy(const std::string& bytes, const std::string& what);
std::string serialize_npy(const Tensor& t);

}  // namespace otter
