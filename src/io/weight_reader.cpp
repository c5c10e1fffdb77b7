#include "io/weight_reader.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "model/optimize.h"

namespace chorus::io {

layers::WeightMap WeightReader::read_all(int source, const std::vector<layers::WeightSpec>& wanted) {
  layers::WeightMap out;
  for (const auto& w : wanted) out[w.name] = read(source, w);
  return out;
}

void WeightReader::load_node(model::Node& node) {
  auto set = [&](layers::Layer& layer, int source) {
    auto wanted = layer.weight_specs();
    if (wanted.empty()) return;
    try {
      layers::WeightMap weights = read_all(source, wanted);
      // A NaN or infinite weight (a diverged training, a damaged file) runs without an error and
      // makes every output NaN: said once per weight, where it is.
      for (const auto& [name, values] : weights) {
        const auto bad = std::count_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); });
        if (bad > 0)
          std::fprintf(
              stderr, "chorus: warning: %s: layer '%s': weight '%s' holds %zu NaN or infinite value(s) of %zu\n",
              path().c_str(), layer.name().c_str(), name.c_str(), static_cast<std::size_t>(bad), values.size());
      }
      layer.set_weights(std::move(weights));
    } catch (const Error& e) {
      if (std::string(e.what()).rfind(path() + ": ", 0) == 0) throw;  // the reader named the file already
      fail(path(), ": ", e.what());
    }
  };
  set(*node.layer, node.source);
  for (auto& f : node.folded) set(*f.layer, f.source);
  model::apply_folds(node);
}

std::vector<float> slice_axis(const std::vector<float>& values, const std::vector<int>& dims, int axis,
                              std::int64_t begin, std::int64_t end) {
  CHORUS_ASSERT(axis >= 0 && axis < static_cast<int>(dims.size()), "slice axis ", axis);
  CHORUS_ASSERT(begin >= 0 && begin <= end && end <= dims[axis], "slice [", begin, ", ", end, ")");
  std::size_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= dims[i];
  for (std::size_t i = axis + 1; i < dims.size(); ++i) inner *= dims[i];
  const std::size_t width = static_cast<std::size_t>(end - begin) * inner;
  std::vector<float> out(outer * width);
  for (std::size_t o = 0; o < outer; ++o) {
    const float* src = values.data() + (o * dims[axis] + begin) * inner;
    std::copy(src, src + width, out.data() + o * width);
  }
  return out;
}

}  // namespace chorus::io
