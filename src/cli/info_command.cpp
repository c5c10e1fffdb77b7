// `chorus info MODEL`: the layer table (type, output shape, parameters, multiply-adds,
// weight and activation bytes) and totals; --json for the same as data.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/load_model.h"
#include "cli/table.h"
#include "core/error.h"
#include "io/data/inputs.h"

namespace chorus::cli {

namespace {

struct InfoOptions {
  std::string model;
  std::string arch;
  bool json = false;
  bool raw = false;
};

std::string inputs_of(const model::Model& m, const model::Node& node) {
  std::string s;
  for (int i : node.inputs) s += (s.empty() ? "" : ",") + m.value_name(i);
  return s;
}

void run_info(const InfoOptions& o) {
  // Shapes and costs come from the graph alone: the weights are not read (VGG16's are 553 MB).
  auto loaded = load_model(o.model, o.arch, !o.raw, /*load_weights=*/false);
  const auto& m = loaded.model;
  auto total = m.total_cost();
  if (o.json) {
    nlohmann::json out;
    out["model"] = o.model;
    out["inputs"] = nlohmann::json::array();
    for (const auto& in : m.inputs())
      out["inputs"].push_back({{"name", in.name}, {"shape", {in.shape.h, in.shape.w, in.shape.c}},
                               {"channels_first", m.channels_first()}});
    if (m.inputs().size() == 1) out["input"] = out["inputs"][0];  // as before models of several
    out["outputs"] = nlohmann::json::array();
    for (std::size_t k = 0; k < m.outputs().size(); ++k) {
      const Shape s = m.shape_of(m.outputs()[k]);
      out["outputs"].push_back({{"name", m.output_names()[k]},
                                {"layer", m.node(m.outputs()[k]).name()},
                                {"shape", {s.h, s.w, s.c}},
                                {"file_shape", io::keras_dims(s, m.channels_first())}});
    }
    out["layers"] = nlohmann::json::array();
    for (std::size_t i = 0; i < m.nodes().size(); ++i) {
      const auto& node = m.nodes()[i];
      auto c = m.cost(static_cast<int>(i));
      const Shape& s = node.layer->output_shape();
      nlohmann::json inputs = nlohmann::json::array();
      for (int in : node.inputs) inputs.push_back(m.value_name(in));
      out["layers"].push_back({{"name", node.name()},
                               {"type", node.layer->type()},
                               {"inputs", inputs},
                               {"merged", node.merged},
                               {"output_shape", {s.h, s.w, s.c}},
                               {"params", c.weight_bytes / sizeof(float)},
                               {"macs", c.macs},
                               {"weight_bytes", c.weight_bytes},
                               {"activation_bytes", c.output_bytes}});
    }
    out["totals"] = {{"layers", m.nodes().size()},
                     {"params", total.weight_bytes / sizeof(float)},
                     {"macs", total.macs},
                     {"weight_bytes", total.weight_bytes},
                     {"max_activation_bytes", total.output_bytes}};
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::cout << "model  " << o.model << (loaded.has_weights ? "" : "  (architecture only)") << "\n";
  for (const auto& in : m.inputs()) {
    const bool image = in.shape.h > 1 || in.shape.w > 1;
    std::cout << "input  " << in.name << " " << in.shape.str()
              << (m.channels_first() && image ? (in.shape.is_clip() ? "  channels_first: feed NCDHW" : "  channels_first: feed NCHW")
                                              : "")
              << "\n";
  }
  for (std::size_t k = 0; k < m.outputs().size(); ++k) {
    // A channels_first model's image outputs are written (and their --top indices counted) in
    // NCHW order.
    const Shape s = m.shape_of(m.outputs()[k]);
    const auto written = io::keras_dims(s, true);
    const bool nchw = m.channels_first() && written.size() >= 3;
    if (m.outputs().size() == 1 && !nchw) continue;
    std::cout << "output " << m.output_names()[k] << " " << s.str() << " (layer " << m.node(m.outputs()[k]).name()
              << ")";
    if (nchw) {
      std::cout << "  channels_first: written (N";
      for (auto d : written) std::cout << ", " << d;
      std::cout << ")";
    }
    std::cout << "\n";
  }
  std::cout << "\n";
  Table t({"layer", "type", "output", "params", "MACs", "weights", "activation", "settings"});
  for (std::size_t i = 0; i < m.nodes().size(); ++i) {
    const auto& node = m.nodes()[i];
    auto c = m.cost(static_cast<int>(i));
    std::string settings = node.layer->describe();
    if (node.inputs.size() > 1 || (node.inputs[0] != static_cast<int>(i) - 1))
      settings += (settings.empty() ? "" : "; ") + std::string("from ") + inputs_of(m, node);
    if (!node.merged.empty()) {
      std::string merged;
      for (const auto& n : node.merged) merged += (merged.empty() ? "" : ",") + n;
      settings += (settings.empty() ? "" : "; ") + std::string("+") + merged;
    }
    // A 3-D layer whose output is one image deep is still a clip, as Keras shows it: (1, 4, 4, 512).
    const Shape out = node.layer->output_shape();
    const bool clip_layer =
        node.layer->type().size() > 2 && node.layer->type().compare(node.layer->type().size() - 2, 2, "3D") == 0;
    const std::string shape = clip_layer && out.d == 1 ? cat("(1, ", out.h, ", ", out.w, ", ", out.c, ")") : out.str();
    t.add({node.name(), node.layer->type(), shape, human_count(c.weight_bytes / 4.0), human_count(c.macs),
           human_bytes(static_cast<double>(c.weight_bytes)), human_bytes(static_cast<double>(c.output_bytes)),
           settings});
  }
  t.add_rule();
  const std::string outputs =
      m.outputs().size() == 1 ? m.output_shape().str() : cat(m.outputs().size(), " outputs");
  t.add({cat(m.nodes().size(), " layers"), "total", outputs, human_count(total.weight_bytes / 4.0),
         human_count(total.macs), human_bytes(static_cast<double>(total.weight_bytes)),
         "max " + human_bytes(static_cast<double>(total.output_bytes)), ""});
  t.print(std::cout);
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto o = std::make_shared<InfoOptions>();
  auto* cmd = app.add_subcommand("info", "Show a model's layers, shapes, parameters and costs");
  cmd->add_option("model", o->model, "Keras .h5 or .keras, or ONNX .onnx model, or a Keras architecture .json/.yaml")
      ->required();
  cmd->add_option("--arch", o->arch, "Architecture file for a weights-only .h5");
  cmd->add_flag("--json", o->json, "Print the table as JSON");
  cmd->add_flag("--raw", o->raw, "Show layers as imported, before batch-norm folding and activation fusion");
  cmd->callback([o] { run_info(*o); });
}

}  // namespace chorus::cli
