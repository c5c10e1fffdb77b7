#include "partition/row_bands.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <tuple>

#include "core/error.h"
#include "layers/conv2d.h"
#include "layers/depthwise_conv2d.h"
#include "layers/layers3d.h"
#include "layers/merge.h"
#include "layers/padding.h"
#include "layers/pooling.h"
#include "layers/separable_conv2d.h"
#include "model/optimize.h"
#include "plan/band_geometry.h"

namespace chorus::partition {

using namespace chorus::layers;

namespace {

// A 3-D window over a band of rows and columns: the layer's own pads on depth, the band's on
// rows and columns (only where the band meets the image's edge).
Window3D band_window(Window3D w, const Geometry3D& g, const plan::RowNeed& need, const plan::RowNeed& columns) {
  w.explicit_pads = true;
  w.pad_before[0] = g.pad[0];
  w.pad_after[0] = g.pad_after[0];
  w.pad_before[1] = need.pad_top;
  w.pad_after[1] = need.pad_bottom;
  w.pad_before[2] = columns.pad_top;
  w.pad_after[2] = columns.pad_bottom;
  return w;
}

// Makes `variant` read the weights of `owner`, a layer of the same kind.
void share_weights(Layer& variant, const Layer& owner) {
  if (auto* c = dynamic_cast<Conv2D*>(&variant))
    c->share_weights(dynamic_cast<const Conv2D&>(owner));
  else if (auto* d = dynamic_cast<DepthwiseConv2D*>(&variant))
    d->share_weights(dynamic_cast<const DepthwiseConv2D&>(owner));
  else if (auto* s = dynamic_cast<SeparableConv2D*>(&variant))
    s->share_weights(dynamic_cast<const SeparableConv2D&>(owner));
  else
    throw Error(cat(variant.name(), ": its weights cannot be shared by a band"));
}

}  // namespace

RowBand make_row_band(model::Model& m, int first, int last, const plan::Tile& out, io::WeightReader& reader,
                      const RowBand* weights_of) {
  const std::vector<plan::BandNodeRows> rows = plan::band_rows(m, first, last, out.rows.first, out.rows.second);
  const std::vector<plan::BandNodeRows> columns =
      plan::band_rows(m, first, last, out.columns.first, out.columns.second, plan::Axis::columns);
  RowBand band;
  std::tie(band.input_begin, band.input_end) = plan::band_reads(m, first, last, rows);
  band.input_columns = plan::band_reads(m, first, last, columns);
  band.steps.resize(last - first + 1);
  for (int n = first; n <= last; ++n) {
    const model::Node& node = m.node(n);
    const Layer& l = *node.layer;
    const plan::RowNeed need = rows[n - first].need;
    const plan::RowNeed across = columns[n - first].need;
    BandStep& step = band.steps[n - first];
    step.node = n;
    step.in_begin = need.begin;
    step.in_end = need.end;
    step.out_begin = rows[n - first].out_begin;
    step.out_end = rows[n - first].out_end;
    step.in_columns = {across.begin, across.end};
    step.out_columns = {columns[n - first].out_begin, columns[n - first].out_end};
    for (int v : node.inputs) step.inputs.push_back(v >= first && v <= last ? v - first : -1);
    std::vector<Shape> in = l.input_shapes();
    for (Shape& s : in) {
      s.h = need.end - need.begin;
      s.w = across.end - across.begin;
    }
    if (auto* c = dynamic_cast<const Conv2D*>(&l)) {
      Conv2DSettings s = c->settings();
      s.explicit_pads = true;
      s.pads = {need.pad_top, need.pad_bottom, across.pad_top, across.pad_bottom};
      step.own_layer = std::make_unique<Conv2D>(l.name(), s);
    } else if (auto* d = dynamic_cast<const DepthwiseConv2D*>(&l)) {
      DepthwiseConv2DSettings s = d->settings();
      s.explicit_pads = true;
      s.pads = {need.pad_top, need.pad_bottom, across.pad_top, across.pad_bottom};
      step.own_layer = std::make_unique<DepthwiseConv2D>(l.name(), s);
    } else if (auto* sep = dynamic_cast<const SeparableConv2D*>(&l)) {
      SeparableConv2DSettings s = sep->settings();
      s.depthwise.explicit_pads = true;
      s.depthwise.pads = {need.pad_top, need.pad_bottom, across.pad_top, across.pad_bottom};
      step.own_layer = std::make_unique<SeparableConv2D>(l.name(), s);
    } else if (auto* p = dynamic_cast<const Pool2D*>(&l)) {
      Pool2DSettings s = p->settings();
      s.explicit_pads = true;
      s.pads = {need.pad_top, need.pad_bottom, across.pad_top, across.pad_bottom};
      step.own_layer = std::make_unique<Pool2D>(l.name(), s);
    } else if (dynamic_cast<const ZeroPadding2D*>(&l) != nullptr) {
      step.own_layer = std::make_unique<ZeroPadding2D>(
          l.name(), Pads{need.pad_top, need.pad_bottom, across.pad_top, across.pad_bottom});
    } else if (auto* c3 = dynamic_cast<const Conv3D*>(&l)) {
      Conv3DSettings s = c3->settings();
      s.window = band_window(s.window, c3->geometry(), need, across);
      step.own_layer = std::make_unique<Conv3D>(l.name(), s);
    } else if (auto* p3 = dynamic_cast<const Pool3D*>(&l)) {
      step.own_layer =
          std::make_unique<Pool3D>(l.name(), p3->kind(), band_window(p3->window(), p3->geometry(), need, across));
    } else if (auto* z3 = dynamic_cast<const ZeroPadding3D*>(&l)) {
      std::array<int, 6> pads = z3->pads();
      pads[2] = need.pad_top;
      pads[3] = need.pad_bottom;
      pads[4] = across.pad_top;
      pads[5] = across.pad_bottom;
      step.own_layer = std::make_unique<ZeroPadding3D>(l.name(), pads);
    } else if (auto* e = dynamic_cast<const Elementwise*>(&l)) {
      // Merges size their output from their shapes, not their inputs': one of the band's rows.
      step.own_layer = std::make_unique<Elementwise>(l.name(), e->op(), e->activation());
    } else if (auto* j = dynamic_cast<const Concatenate*>(&l)) {
      step.own_layer = std::make_unique<Concatenate>(l.name(), j->axis());
    }
    if (step.own_layer) {
      Shape out = step.own_layer->build(in);
      CHORUS_ASSERT(out.h == step.out_end - step.out_begin && out.w == step.out_columns.second - step.out_columns.first,
                    "band of ", l.name(), ": ", out.h, "x", out.w, ", expected ", step.out_end - step.out_begin, "x",
                    step.out_columns.second - step.out_columns.first);
      if (!step.own_layer->weight_specs().empty() && weights_of) {
        share_weights(*step.own_layer, *weights_of->steps.at(n - first).own_layer);
      } else if (!step.own_layer->weight_specs().empty()) {
        step.own_layer->set_weights(reader.read_all(node.source, step.own_layer->weight_specs()));
        for (const auto& f : node.folded) {
          f.layer->set_weights(reader.read_all(f.source, f.layer->weight_specs()));
          model::fold_scale_shift(*step.own_layer, *f.layer);
        }
      }
    } else if (!weights_of) {
      reader.load_node(m.nodes()[n]);  // pointwise layers work on any number of rows
    }
  }
  return band;
}

void slice_tile(const Tensor& in, const plan::Tile& held, const plan::Tile& part, Tensor& out) {
  Shape s = in.shape();
  s.h = part.rows.second - part.rows.first;
  s.w = part.columns.second - part.columns.first;
  out.resize(in.frames(), s);
  const Shape& from = in.shape();
  for (int n = 0; n < in.frames(); ++n)
    copy_image_block(in.frame(n),
                     {from.h, from.w, part.rows.first - held.rows.first, part.columns.first - held.columns.first},
                     out.frame(n), {s.h, s.w, 0, 0}, s.h, s.w, s.d, s.c);
}

void copy_image_block(const float* from, const BlockAt& a, float* to, const BlockAt& b, int rows, int columns,
                      int images, std::size_t pixel) {
  if (columns == a.w && columns == b.w) {  // whole rows: one copy per image
    copy_image_rows(from, a.h, a.row, to, b.h, b.row, rows, images, columns * pixel);
    return;
  }
  const std::size_t run = columns * pixel * sizeof(float);
  for (int z = 0; z < images; ++z)
    for (int y = 0; y < rows; ++y)
      std::memcpy(to + ((static_cast<std::size_t>(z) * b.h + b.row + y) * b.w + b.column) * pixel,
                  from + ((static_cast<std::size_t>(z) * a.h + a.row + y) * a.w + a.column) * pixel, run);
}

void copy_image_rows(const float* from, int from_h, int from_first, float* to, int to_h, int to_first, int rows,
                     int images, std::size_t row) {
  for (int z = 0; z < images; ++z)
    std::memcpy(to + (static_cast<std::size_t>(z) * to_h + to_first) * row,
                from + (static_cast<std::size_t>(z) * from_h + from_first) * row, rows * row * sizeof(float));
}

}  // namespace chorus::partition
