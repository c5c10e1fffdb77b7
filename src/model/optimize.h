#pragma once
// Graph rewrites done once, before the weights are loaded: drop identity layers, mark batch
// normalisations for folding into the convolution or dense layer before them, and fuse
// standalone activations into their producer. Outputs are unchanged up to float rounding.
// The rewrites depend on the graph only, so every rank of a distributed run makes the same.
#include "model/model.h"

namespace chorus::model {

struct OptimizeStats {
  int identities_removed = 0;
  int batch_norms_folded = 0;
  int activations_fused = 0;
};

OptimizeStats optimize(Model& model);

// Folds a batch norm's per-channel scale and shift into a convolution or dense layer whose
// output channel c is `first_channel + c` of the batch norm's channels (a part of a split
// layer has first_channel > 0). With `shift` false only the scale is applied (the partial
// sums of an input split get the shift once, after they are added). Returns false when the
// layer kind cannot absorb one.
bool fold_scale_shift(layers::Layer& producer, const layers::Layer& batch_norm, int first_channel = 0,
                      bool shift = true);

// Applies a node's folded batch norms to its (loaded) weights.
void apply_folds(Node& node);

}  // namespace chorus::model
