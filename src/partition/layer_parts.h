#pragma once
// One rank's part of a layer split inside a stage: a slice of the output channels (computed
// from the whole input), of the input channels (giving partial sums of every output), or of an
// attention layer's heads (partial sums too). The
// part's weights are read as slices of the file's datasets, so no rank holds the whole layer.
#include <memory>
#include <vector>

#include "io/weight_reader.h"
#include "layers/layer.h"
#include "model/model.h"

namespace chorus::partition {

struct LayerPart {
  // Built and loaded. A copy of the part shares it (a shared layer's calls split alike on one
  // member: StageWorker).
  std::shared_ptr<layers::Layer> layer;
  int begin = 0, end = 0;                // output channels (split-output) or input channels (split-input)
  int input_begin = 0, input_end = 0;    // input channels the part reads
  bool reads_all_inputs = true;
  // Input splits: added once after the partial sums, with batch-norm shifts folded in.
  std::vector<float> bias;
  // Applied to the whole output after the parts are joined: an input split's activation, or
  // an output split's softmax (which needs every channel).
  layers::Activation activation;
  // An output slice of a convolution that takes its input channel block by block, as the
  // gathered slices of the layer before arrive (plan::gather_overlaps_next): block k convolves
  // input channels [bounds[k], bounds[k + 1]) into the slice's outputs, without bias or
  // activation; then `layer` is built but holds no weights, and the sum of the blocks gets
  // `block_bias` and `block_activation`.
  std::vector<std::shared_ptr<layers::Layer>> input_blocks;
  std::vector<float> block_bias;
  layers::Activation block_activation;
};

// `begin`/`end` are in split_extent() units: output channels, except input channels for a
// depthwise layer (whose outputs follow with their multiplier).
LayerPart make_output_part(const model::Node& node, int begin, int end, io::WeightReader& reader);
LayerPart make_input_part(const model::Node& node, int begin, int end, io::WeightReader& reader);
// Output channels [begin, end) of a Conv2D, in blocks of input channels cut at `input_bounds`
// (LayerPart::input_blocks). The member reads only its filters' kernel, once, and cuts it into
// the blocks, so it holds the slice's weights once.
LayerPart make_blocked_output_part(const model::Node& node, int begin, int end, const std::vector<int>& input_bounds,
                                   io::WeightReader& reader);
// Heads [begin, end) of an attention layer, from the whole input: partial sums of its output
// projection, whose bias is added once after the sum.
LayerPart make_head_part(const model::Node& node, int begin, int end, io::WeightReader& reader);

// Coded redundancy (plan::Stage::parity): a Dense or Conv2D layer (no folded batch norm) whose
// output channels are cut at `bounds`; the parity part has as many channels as the widest slice,
// each the sum of the slices' weights and biases at that position (narrower slices padded with
// zeros), so its output is the sum of the slices' outputs. Neither this nor the members' parts
// of such a stage apply the layer's activation: the consumer does, once the slices are joined.
LayerPart make_parity_part(const model::Node& node, const std::vector<int>& bounds, io::WeightReader& reader);
// The activation a split layer's consumer applies after joining a parity stage's slices.
layers::Activation layer_activation(const model::Node& node);
// Takes the activation out of a part's layer (a parity stage's member computes it before).
void strip_activation(LayerPart& part);

// Copies channels [begin, end) of every pixel into a new tensor.
void slice_channels(const Tensor& in, int begin, int end, Tensor& out);

}  // namespace chorus::partition
