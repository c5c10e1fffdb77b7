#pragma once
// Graph rewrites done once after the weights are loaded: drop identity layers, fold batch
// normalisation into the convolution or dense layer before it, and fuse standalone
// activations into their producer. Outputs are unchanged up to float rounding.
#include "model/model.h"

namespace chorus::model {

struct OptimizeStats {
  int identities_removed = 0;
  int batch_norms_folded = 0;
  int activations_fused = 0;
};

OptimizeStats optimize(Model& model);

}  // namespace chorus::model
