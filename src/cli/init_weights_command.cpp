// `chorus init-weights SPEC --seed S -o model.h5`: deterministic random weights in the Keras
// HDF5 layout the importer reads (or a Keras 3 .keras archive for -o model.keras), for zoo
// models whose trained weights cannot be downloaded.
#include <chrono>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "cli/table.h"
#include "core/error.h"
#include "io/keras/keras_writer.h"

namespace chorus::cli {

void add_init_weights_command(CLI::App& app) {
  struct Options {
    std::string spec, output;
    std::uint64_t seed = 1;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("init-weights", "Write deterministic random weights for an architecture file");
  cmd->add_option("spec", o->spec, "Architecture file (.json from model.to_json(), or .yaml)")->required();
  cmd->add_option("--seed", o->seed, "Random seed (same seed, same weights on every platform)")->check(seed_number());
  cmd->add_option("-o,--output", o->output, "Keras .h5 file to write, or a Keras 3 .keras archive")->required();
  cmd->callback([o] {
    // The file's kind follows its name, as `chorus run` reads it: an HDF5 file named .onnx would
    // then be refused as a broken ONNX file.
    const std::string ext = std::filesystem::path(o->output).extension().string();
    if (ext != ".h5" && ext != ".hdf5" && ext != ".keras")
      fail("init-weights: -o ", o->output, ": write a Keras .h5 (or .hdf5) file or a .keras archive");
    auto start = std::chrono::steady_clock::now();
    io::init_keras_weights(o->spec, o->seed, o->output);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "wrote " << o->output << " (seed " << o->seed << ") in " << fixed(s, 1) << " s\n";
  });
}

}  // namespace chorus::cli
