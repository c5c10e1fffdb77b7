#pragma once
// Row bands for split-spatial stages (DeepThings' fused tiles, in rows): a rank computes rows
// [r0, r1) of the stage's last layer; walking back through the chain gives the exact input
// rows it needs (the halo) and the padding each band layer applies at the image edges only.
// In a grid of tiles a band also cuts the columns: the same walk along the other axis.
#include <memory>
#include <vector>

#include "io/weight_reader.h"
#include "model/model.h"
#include "plan/band_geometry.h"

namespace chorus::partition {

struct BandStep {
  int node = 0;
  int in_begin = 0, in_end = 0;    // rows it reads of each of its inputs
  int out_begin = 0, out_end = 0;  // output rows it produces
  plan::Span in_columns, out_columns;  // the same for columns
  // Per input of the node: the step that computes it, or -1 for the band's input.
  std::vector<int> inputs;
  std::unique_ptr<layers::Layer> own_layer;  // band variant (explicit pads); null: use the node's layer
};

struct RowBand {
  std::vector<BandStep> steps;         // in model order: a chain, or a graph whose branches join (plan::is_band_graph)
  int input_begin = 0, input_end = 0;  // rows of the band's input its steps read, together
  plan::Span input_columns;            // and columns
  int in_begin() const { return input_begin; }
  int in_end() const { return input_end; }
  int out_begin() const { return steps.back().out_begin; }
  int out_end() const { return steps.back().out_end; }
  // The rows the value a step reads holds: its producer's (step `producer`, -1 the band's input).
  int rows_begin(int producer) const { return producer < 0 ? input_begin : steps[producer].out_begin; }
  int rows_end(int producer) const { return producer < 0 ? input_end : steps[producer].out_end; }
  plan::Span columns_of(int producer) const { return producer < 0 ? input_columns : steps[producer].out_columns; }
  plan::Tile input_tile() const { return {{input_begin, input_end}, input_columns}; }
  plan::Tile output_tile() const { return {{out_begin(), out_end()}, steps.back().out_columns}; }
};

// Builds the band's layers; those with weights are loaded whole from `reader`, layers without
// geometry (activations, batch norm) use the node's own layer, whose weights are loaded too.
// Merges get a variant of the band's rows. A step whose producer computed more rows than it
// reads (a branch of a wider halo) reads a crop of them.
// With `weights_of`, a band of the same layers (other rows of them) whose layers read
// their weights, shared rather than loaded again: a part of a band computed apart.
RowBand make_row_band(model::Model& model, int first, int last, const plan::Tile& out, io::WeightReader& reader,
                      const RowBand* weights_of = nullptr);

// Copies tile `part` of every frame of `in`, which holds tile `held` of its value.
void slice_tile(const Tensor& in, const plan::Tile& held, const plan::Tile& part, Tensor& out);

// Copies `rows` rows of each of the `images` images of one frame (a clip's; 1 for an image),
// from row `from_first` of images `from_h` rows high to row `to_first` of images `to_h` rows
// high, `row` floats a row. Bands, their halos and their messages move rows this way.
void copy_image_rows(const float* from, int from_h, int from_first, float* to, int to_h, int to_first, int rows,
                     int images, std::size_t row);

// Where a block of rows and columns lies in the images of one frame: images of `h` x `w`
// pixels, the block from row `row` and column `column` on.
struct BlockAt {
  int h, w, row, column;
};
// Copies `rows` x `columns` pixels of `pixel` floats of each of `images` images of one frame
// from one block to another (whole rows move as one copy).
void copy_image_block(const float* from, const BlockAt& from_at, float* to, const BlockAt& to_at, int rows, int columns,
                      int images, std::size_t pixel);

}  // namespace chorus::partition
