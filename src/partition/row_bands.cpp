#include "partition/row_bands.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "core/error.h"
#include "layers/conv2d.h"
#include "layers/depthwise_conv2d.h"
#include "layers/layers3d.h"
#include "layers/padding.h"
#include "layers/pooling.h"
#include "model/optimize.h"
#include "plan/band_geometry.h"

namespace chorus::partition {

using namespace chorus::layers;

namespace {

// A 3-D window over a band of rows: the layer's own pads on depth and columns, the band's at
// the top and bottom (only where the band meets the image's edge).
Window3D band_window(Window3D w, const Geometry3D& g, const plan::RowNeed& need) {
  w.explicit_pads = true;
  for (int a : {0, 2}) {
    w.pad_before[a] = g.pad[a];
    w.pad_after[a] = g.pad_after[a];
  }
  w.pad_before[1] = need.pad_top;
  w.pad_after[1] = need.pad_bottom;
  return w;
}

}  // namespace

RowBand make_row_band(model::Model& m, int first, int last, int out_begin, int out_end,
                      io::WeightReader& reader) {
  RowBand band;
  band.steps.resize(last - first + 1);
  int a = out_begin, b = out_end;
  for (int n = last; n >= first; --n) {
    const model::Node& node = m.node(n);
    const Layer& l = *node.layer;
    plan::RowNeed need = plan::rows_needed(l, a, b);
    BandStep& step = band.steps[n - first];
    step.node = n;
    step.in_begin = need.begin;
    step.in_end = need.end;
    step.out_begin = a;
    step.out_end = b;
    Shape in = l.input_shapes()[0];
    in.h = need.end - need.begin;
    if (auto* c = dynamic_cast<const Conv2D*>(&l)) {
      Conv2DSettings s = c->settings();
      s.explicit_pads = true;
      s.pads = {need.pad_top, need.pad_bottom, c->pads().left, c->pads().right};
      step.own_layer = std::make_unique<Conv2D>(l.name(), s);
    } else if (auto* d = dynamic_cast<const DepthwiseConv2D*>(&l)) {
      DepthwiseConv2DSettings s = d->settings();
      s.explicit_pads = true;
      s.pads = {need.pad_top, need.pad_bottom, d->pads().left, d->pads().right};
      step.own_layer = std::make_unique<DepthwiseConv2D>(l.name(), s);
    } else if (auto* p = dynamic_cast<const Pool2D*>(&l)) {
      Pool2DSettings s = p->settings();
      s.explicit_pads = true;
      s.pads = {need.pad_top, need.pad_bottom, p->pads().left, p->pads().right};
      step.own_layer = std::make_unique<Pool2D>(l.name(), s);
    } else if (auto* z = dynamic_cast<const ZeroPadding2D*>(&l)) {
      step.own_layer = std::make_unique<ZeroPadding2D>(
          l.name(), Pads{need.pad_top, need.pad_bottom, z->pads().left, z->pads().right});
    } else if (auto* c3 = dynamic_cast<const Conv3D*>(&l)) {
      Conv3DSettings s = c3->settings();
      s.window = band_window(s.window, c3->geometry(), need);
      step.own_layer = std::make_unique<Conv3D>(l.name(), s);
    } else if (auto* p3 = dynamic_cast<const Pool3D*>(&l)) {
      step.own_layer = std::make_unique<Pool3D>(l.name(), p3->kind(), band_window(p3->window(), p3->geometry(), need));
    } else if (auto* z3 = dynamic_cast<const ZeroPadding3D*>(&l)) {
      std::array<int, 6> pads = z3->pads();
      pads[2] = need.pad_top;
      pads[3] = need.pad_bottom;
      step.own_layer = std::make_unique<ZeroPadding3D>(l.name(), pads);
    }
    if (step.own_layer) {
      Shape out = step.own_layer->build({in});
      CHORUS_ASSERT(out.h == b - a, "band of ", l.name(), ": ", out.h, " rows, expected ", b - a);
      if (!step.own_layer->weight_specs().empty()) {
        step.own_layer->set_weights(reader.read_all(node.source, step.own_layer->weight_specs()));
        for (const auto& f : node.folded) {
          f.layer->set_weights(reader.read_all(f.source, f.layer->weight_specs()));
          model::fold_scale_shift(*step.own_layer, *f.layer);
        }
      }
    } else {
      reader.load_node(m.nodes()[n]);  // pointwise layers work on any number of rows
    }
    a = need.begin;
    b = need.end;
  }
  return band;
}

void slice_rows(const Tensor& in, int begin, int end, Tensor& out) {
  Shape s = in.shape();
  s.h = end - begin;
  out.resize(in.frames(), s);
  for (int n = 0; n < in.frames(); ++n)
    copy_image_rows(in.frame(n), in.shape().h, begin, out.frame(n), s.h, 0, s.h, s.d,
                    static_cast<std::size_t>(s.w) * s.c);
}

void copy_image_rows(const float* from, int from_h, int from_first, float* to, int to_h, int to_first, int rows,
                     int images, std::size_t row) {
  for (int z = 0; z < images; ++z)
    std::memcpy(to + (static_cast<std::size_t>(z) * to_h + to_first) * row,
                from + (static_cast<std::size_t>(z) * from_h + from_first) * row, rows * row * sizeof(float));
}

}  // namespace chorus::partition
