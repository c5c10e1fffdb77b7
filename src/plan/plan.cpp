#include "plan/plan.h"

#include <fstream>

#include "core/error.h"

namespace chorus::plan {

using nlohmann::json;

std::string mode_name(StageMode mode) {
  switch (mode) {
    case StageMode::single: return "single";
    case StageMode::replicate: return "replicate";
    case StageMode::split_output: return "split-output";
    case StageMode::split_input: return "split-input";
    case StageMode::split_tensor: return "split-tensor";
    case StageMode::split_spatial: return "split-spatial";
  }
  return "?";
}

StageMode parse_mode(const std::string& name) {
  for (auto m : {StageMode::single, StageMode::replicate, StageMode::split_output, StageMode::split_input,
                 StageMode::split_tensor,
                 StageMode::split_spatial})
    if (mode_name(m) == name) return m;
  fail("unknown stage mode '", name, "' (single, replicate, split-output, split-input, split-spatial, split-tensor)");
}

Plan plan_from_json(const json& j, const std::string& source) {
  Plan p;
  auto where = [&](const std::string& field) { return cat(source, ": ", field); };
  try {
    if (!j.is_object()) fail(source, ": a plan is a JSON object");
    p.model = j.value("model", "");
    p.ranks = j.at("ranks").get<int>();
    p.source = j.value("source", 0);
    p.sink = j.value("sink", 0);
    p.max_in_flight = j.value("max_in_flight", 0);
    if (j.contains("prediction")) p.prediction = j["prediction"];
    const json& stages = j.at("stages");
    if (!stages.is_array()) fail(where("stages"), " must be a list");
    for (std::size_t i = 0; i < stages.size(); ++i) {
      const json& s = stages[i];
      Stage st;
      if (!s.contains("layers") || !s["layers"].is_array() || s["layers"].size() != 2)
        fail(where(cat("stages[", i, "].layers")), " must be [first, last] layer names");
      st.first = s["layers"][0].get<std::string>();
      st.last = s["layers"][1].get<std::string>();
      st.mode = parse_mode(s.value("mode", "single"));
      st.ranks = s.at("ranks").get<std::vector<int>>();
      if (s.contains("fractions")) st.fractions = s["fractions"].get<std::vector<double>>();
      if (s.contains("exchange_after")) st.exchange_after = s["exchange_after"].get<std::vector<std::string>>();
      st.parity = s.value("parity", 0);
      st.columns = s.value("columns", 1);
      p.stages.push_back(std::move(st));
    }
  } catch (const json::exception& e) {
    fail(source, ": malformed plan: ", e.what());
  } catch (const Error& e) {
    throw;
  }
  return p;
}

json plan_to_json(const Plan& p) {
  json stages = json::array();
  for (const auto& s : p.stages) {
    json st{{"layers", {s.first, s.last}}, {"mode", mode_name(s.mode)}, {"ranks", s.ranks}};
    if (!s.fractions.empty()) st["fractions"] = s.fractions;
    if (!s.exchange_after.empty()) st["exchange_after"] = s.exchange_after;
    if (s.parity > 0) st["parity"] = s.parity;
    if (s.columns != 1) st["columns"] = s.columns;
    stages.push_back(st);
  }
  json j{{"model", p.model}, {"ranks", p.ranks}, {"source", p.source}, {"sink", p.sink}, {"stages", stages}};
  if (p.max_in_flight > 0) j["max_in_flight"] = p.max_in_flight;
  if (!p.prediction.is_null()) j["prediction"] = p.prediction;
  return j;
}

Plan read_plan(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open plan file");
  json j;
  try {
    in >> j;
  } catch (const json::exception& e) {
    fail(path, ": plan is not valid JSON: ", e.what());
  }
  return plan_from_json(j, path);
}

void write_plan(const Plan& plan, const std::string& path) {
  std::ofstream out(path);
  if (!out) fail(path, ": cannot write plan file");
  out << plan_to_json(plan).dump(2) << "\n";
}

}  // namespace chorus::plan
