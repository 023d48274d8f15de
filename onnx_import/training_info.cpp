// ModelProto.training_info -> initialization and combined graphs (see training_info.h).
#include "onnx_import/training_info.h"

#include <filesystem>
#include <map>
#include <set>

#include "runtime/core/file_io.h"

#include "onnx_import/expand_functions.h"
#include "onnx_import/proto_import.h"

namespace otter {
namespace {

std::set<std::string> initializer_names(const onnx::GraphProto& gp) {
  std::set<std::string> s;
  for (const auto& init : gp.initializer()) s.insert(init.name());
  return s;
}

std::set<std::string> output_names(const onnx::GraphProto& gp) {
  std::set<std::string> s;
  for (const auto& o : gp.output()) s.insert(o.name());
  return s;
}

}  // namespace

TrainingModel import_training_info(const LoadedModel& loaded) {
  TrainingModel out;
  onnx::ModelProto model = parse_model(loaded.model_bytes.data(), loaded.model_bytes.size());
  for (const auto& e : model.metadata_props())
    if (e.key() == kTrainingInitializedKey) out.initialized = e.value() == "true";
  if (model.training_info_size() == 0) return out;
  OTTER_CHECK_KIND(InvalidModel, model.ir_version() >= 7, "the model has training_info but IR version ",
                   model.ir_version(), "; TrainingInfoProto needs IR version 7 or later");
  const std::set<std::string> inference_initializers = initializer_names(model.graph());
  std::set<std::string> updated;  // update_binding keys over every TrainingInfoProto (unique by the spec)
  for (int i = 0; i < model.training_info_size(); ++i) {
    const onnx::TrainingInfoProto& tp = model.training_info(i);
    TrainingInfo info;
    info.where = "training_info[" + std::to_string(i) + "]";
    const std::string& where = info.where;
    const std::set<std::string> algorithm_initializers = initializer_names(tp.algorithm());
    auto is_state = [&](const std::string& name) {
      return inference_initializers.count(name) || algorithm_initializers.count(name);
    };

    // The initialization graph: standalone, no inputs.
    OTTER_CHECK_KIND(InvalidModel, tp.initialization().input_size() == 0, where, ".initialization has ",
                     tp.initialization().input_size(), " input(s) ('", tp.initialization().input_size() ? tp.initialization().input(0).name() : "",
                     "'); an initialization graph has none");
    import_opsets(info.initialization, model);
    append_graph_proto(info.initialization, tp.initialization(), loaded.base_dir, where + ".initialization: ");
    expand_functions(info.initialization);
    info.initialization.topo_order();
    const std::set<std::string> init_outputs = output_names(tp.initialization());
    std::set<std::string> init_keys;
    for (const auto& b : tp.initialization_binding()) {
      OTTER_CHECK_KIND(InvalidModel, is_state(b.key()), where, ".initialization_binding: '", b.key(),
                       "' is not an initializer of the inference graph or of this algorithm graph");
      OTTER_CHECK_KIND(InvalidModel, init_outputs.count(b.value()), where, ".initialization_binding: '", b.key(),
                       "' is bound to '", b.value(), "', which is not an output of the initialization graph");
      OTTER_CHECK_KIND(InvalidModel, init_keys.insert(b.key()).second, where, ".initialization_binding: '", b.key(),
                       "' is bound twice");
      info.initialization_binding.push_back({b.key(), b.value()});
    }

    // The combined graph: inference, then algorithm.
    Graph& g = info.combined;
    import_opsets(g, model);
    append_graph_proto(g, model.graph(), loaded.base_dir, "");
    info.inference_nodes = g.nodes.size();
    append_graph_proto(g, tp.algorithm(), loaded.base_dir, where + ".algorithm: ");
    expand_functions(g);
    g.topo_order();
    std::set<std::string> combined_outputs = output_names(model.graph());
    for (const std::string& o : output_names(tp.algorithm())) combined_outputs.insert(o);
    for (const auto& b : tp.update_binding()) {
      OTTER_CHECK_KIND(InvalidModel, is_state(b.key()), where, ".update_binding: '", b.key(),
                       "' is not an initializer of the inference graph or of this algorithm graph");
      OTTER_CHECK_KIND(InvalidModel, combined_outputs.count(b.value()), where, ".update_binding: '", b.key(),
                       "' is bound to '", b.value(),
                       "', which is not an output of the algorithm graph or of the inference graph");
      OTTER_CHECK_KIND(InvalidModel, updated.insert(b.key()).second, where, ".update_binding: '", b.key(),
                       "' is bound more than once (each variable is updated by one binding)");
      info.update_binding.push_back({b.key(), b.value()});
    }
    out.infos.push_back(std::move(info));
  }
  return out;
}

std::map<std::string, Tensor> read_model_state(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::string bytes = read_file(path, "model", (uint64_t(1) << 31) - 1);
  OTTER_CHECK_KIND(InvalidModel, !bytes.empty(), "model '", path, "' is empty");
  onnx::ModelProto model;
  try {
    model = parse_model(bytes.data(), bytes.size());
  } catch (const Error& e) {
    throw Error(cat("loading '", path, "': ", e.what()), ErrorKind::InvalidModel);
  }
  const std::string dir = std::filesystem::path(path).has_parent_path() ? std::filesystem::path(path).parent_path().string() : ".";
  std::map<std::string, Tensor> out;
  auto take = [&](const onnx::GraphProto& gp) {
    for (const auto& init : gp.initializer()) out[init.name()] = tensor_from_proto(init, dir);
  };
  take(model.graph());
  for (const auto& ti : model.training_info()) take(ti.algorithm());
  if (metadata)
    for (const auto& e : model.metadata_props()) (*metadata)[e.key()] = e.value();
  return out;
}

}  // namespace otter
