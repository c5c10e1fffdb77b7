#include "plan/plan.h"

#include <climits>
#include <cstdint>
#include <fstream>
#include <initializer_list>

#include "core/error.h"
#include "core/unknown_keys.h"

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

namespace {

// A whole number that fits an int: JSON's 2.5, true or 2^32 + 2 would otherwise be read as 2,
// 1 or 2 without a word.
int whole_number(const json& value, const std::string& field) {
  if (!value.is_number_integer()) fail(field, " must be a whole number, got ", value.dump());
  if (value.is_number_unsigned() ? value.get<std::uint64_t>() > static_cast<std::uint64_t>(INT_MAX)
                                 : value.get<std::int64_t>() < INT_MIN || value.get<std::int64_t>() > INT_MAX)
    fail(field, " is out of range: ", value.dump());
  return value.get<int>();
}
int whole_number(const json& object, const char* key, int otherwise, const std::string& field) {
  return object.contains(key) ? whole_number(object[key], field) : otherwise;
}

}  // namespace

Plan plan_from_json(const json& j, const std::string& source) {
  Plan p;
  auto where = [&](const std::string& field) { return cat(source, ": ", field); };
  try {
    if (!j.is_object()) fail(source, ": a plan is a JSON object");
    refuse_unknown_keys(j, {"model", "ranks", "source", "sink", "max_in_flight", "stages", "prediction"}, source + ": ",
                        "a plan");
    p.model = j.value("model", "");
    if (!j.contains("ranks")) fail(where("ranks"), " is missing");
    p.ranks = whole_number(j["ranks"], where("ranks"));
    if (p.ranks > kMostRanks) fail(where("ranks"), " is ", p.ranks, ": at most ", kMostRanks);
    p.source = whole_number(j, "source", 0, where("source"));
    p.sink = whole_number(j, "sink", 0, where("sink"));
    p.max_in_flight = whole_number(j, "max_in_flight", 0, where("max_in_flight"));
    if (j.contains("max_in_flight") && p.max_in_flight < 1)
      fail(where("max_in_flight"), " is ", p.max_in_flight, ": at least 1 (leave it out for the default)");
    if (p.max_in_flight > kMostInFlight)
      fail(where("max_in_flight"), " is ", p.max_in_flight, ": at most ", kMostInFlight);
    if (j.contains("prediction")) p.prediction = j["prediction"];
    if (!j.contains("stages")) fail(where("stages"), " is missing");
    const json& stages = j["stages"];
    if (!stages.is_array()) fail(where("stages"), " must be a list");
    for (std::size_t i = 0; i < stages.size(); ++i) {
      const json& s = stages[i];
      if (!s.is_object()) fail(where(cat("stages[", i, "]")), " must be an object");
      refuse_unknown_keys(s, {"layers", "mode", "ranks", "fractions", "exchange_after", "parity", "columns"},
                          where(cat("stages[", i, "]: ")), "a stage");
      Stage st;
      if (!s.contains("layers") || !s["layers"].is_array() || s["layers"].size() != 2)
        fail(where(cat("stages[", i, "].layers")), " must be [first, last] layer names");
      st.first = s["layers"][0].get<std::string>();
      st.last = s["layers"][1].get<std::string>();
      st.mode = parse_mode(s.value("mode", "single"));
      const std::string at = cat("stages[", i, "].");
      if (!s.contains("ranks") || !s["ranks"].is_array()) fail(where(at + "ranks"), " must be a list of ranks");
      for (std::size_t k = 0; k < s["ranks"].size(); ++k)
        st.ranks.push_back(whole_number(s["ranks"][k], where(cat(at, "ranks[", k, "]"))));
      if (s.contains("fractions")) st.fractions = s["fractions"].get<std::vector<double>>();
      if (s.contains("exchange_after")) st.exchange_after = s["exchange_after"].get<std::vector<std::string>>();
      st.parity = whole_number(s, "parity", 0, where(at + "parity"));
      st.columns = whole_number(s, "columns", 1, where(at + "columns"));
      p.stages.push_back(std::move(st));
    }
  } catch (const json::exception& e) {
    fail(source, ": malformed plan: ", without_error_id(e.what()));
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
  refuse_directory(path, "a plan file");
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open plan file");
  json j;
  try {
    in >> j;
  } catch (const json::exception& e) {
    fail(path, ": plan is not valid JSON: ", without_error_id(e.what()));
  }
  return plan_from_json(j, path);
}

void write_plan(const Plan& plan, const std::string& path) {
  std::ofstream out(path);
  if (!out) fail(path, ": cannot write plan file");
  out << plan_to_json(plan).dump(2) << "\n";
}

}  // namespace chorus::plan
