#include "partition/row_bands.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "layers/conv2d.h"
#include "layers/depthwise_conv2d.h"
#include "layers/padding.h"
#include "layers/pooling.h"
#include "model/optimize.h"

namespace chorus::partition {

using namespace chorus::layers;

namespace {

struct Window {
  int kernel = 1, stride = 1, dilation = 1, pad_top = 0;
};

// The vertical window of a layer, if it has one.
bool window_of(const Layer& l, Window& w) {
  if (auto* c = dynamic_cast<const Conv2D*>(&l)) {
    w = {c->settings().kernel_h, c->settings().stride_h, c->settings().dilation_h, c->pads().top};
    return true;
  }
  if (auto* d = dynamic_cast<const DepthwiseConv2D*>(&l)) {
    w = {d->settings().kernel_h, d->settings().stride_h, d->settings().dilation_h, d->pads().top};
    return true;
  }
  if (auto* p = dynamic_cast<const Pool2D*>(&l)) {
    w = {p->settings().pool_h, p->settings().stride_h, 1, p->pads().top};
    return true;
  }
  return false;
}

// Input rows [first, last) needed for output rows [a, b), and the band's own top/bottom padding.
struct RowNeed {
  int begin, end, pad_top, pad_bottom;
};

RowNeed rows_needed(const Layer& l, int a, int b) {
  const int in_h = l.input_shapes()[0].h;
  Window w;
  if (window_of(l, w)) {
    const int effective = (w.kernel - 1) * w.dilation + 1;
    const int raw_begin = a * w.stride - w.pad_top;
    const int raw_end = (b - 1) * w.stride - w.pad_top + effective;
    const int begin = std::max(0, raw_begin), end = std::min(in_h, raw_end);
    return {begin, end, begin - raw_begin, raw_end - end};
  }
  if (auto* z = dynamic_cast<const ZeroPadding2D*>(&l)) {
    const int top = z->pads().top;
    const int begin = std::clamp(a - top, 0, in_h), end = std::clamp(b - top, 0, in_h);
    const int pad_top = std::max(0, std::min(b, top) - a);
    const int pad_bottom = std::max(0, b - std::max(a, top + in_h));
    return {begin, end, pad_top, pad_bottom};
  }
  return {a, b, 0, 0};  // pointwise
}

}  // namespace

std::vector<std::pair<int, int>> band_input_rows(const model::Model& m, int first, int last, int out_begin,
                                                 int out_end) {
  std::vector<std::pair<int, int>> rows(last - first + 1);
  int a = out_begin, b = out_end;
  for (int n = last; n >= first; --n) {
    RowNeed need = rows_needed(*m.node(n).layer, a, b);
    rows[n - first] = {need.begin, need.end};
    a = need.begin;
    b = need.end;
  }
  return rows;
}

RowBand make_row_band(model::Model& m, int first, int last, int out_begin, int out_end,
                      io::KerasWeightReader& reader) {
  RowBand band;
  band.steps.resize(last - first + 1);
  int a = out_begin, b = out_end;
  for (int n = last; n >= first; --n) {
    const model::Node& node = m.node(n);
    const Layer& l = *node.layer;
    RowNeed need = rows_needed(l, a, b);
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
  const std::size_t row = static_cast<std::size_t>(s.w) * s.c;
  s.h = end - begin;
  out.resize(in.frames(), s);
  for (int n = 0; n < in.frames(); ++n)
    std::memcpy(out.frame(n), in.frame(n) + begin * row, (end - begin) * row * sizeof(float));
}

}  // namespace chorus::partition
