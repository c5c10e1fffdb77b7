#pragma once
// Outputs written frame by frame as they complete, with a journal that makes a killed run
// resumable. A .npy target gets its header for every frame first, then each frame in order,
// flushed before the journal (TARGET.journal) records it; an HDF5 target is staged the same
// way in TARGET.partial.npy and written when the last frame is in. The journal's first line
// names the run (model, input, their files, frame count, frame shape) so that a resume of a different run
// is refused.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace chorus::io {

struct OutputRun {
  std::string model;                     // as given on the command line
  std::string input;                     // the input source's description (includes the seed)
  int frames = 0;                        // all frames of the run; -1: known at the end (a stream)
  std::vector<std::int64_t> frame_dims;  // one output frame, as written (NCHW for channels_first)
  std::string model_file;                // the model's size and modification time (file_signature): a model
                                         // replaced between a kill and --resume is another run
  std::string input_files;               // the same of the input files ("" for none): a video re-encoded
                                         // in place is another input
};

// "N bytes, modified T" of a file (T in nanoseconds since the epoch), to tell a file from another
// put at the same path; "" where it cannot be read.
std::string file_signature(const std::string& path);

// The targets of a model's outputs for `--output target`: the target itself for one output;
// for several, one file per output, the output's name (characters other than letters, digits,
// '-' and '_' made '_') inserted before the extension: out.npy -> out.scores.npy, out.h5:/d ->
// out.scores.h5:/d.
std::vector<std::string> output_targets(const std::string& target, const std::vector<std::string>& output_names);

class OutputJournal {
 public:
  // Starts `target` afresh (replacing an unfinished run's files), or with `resume` continues
  // what a killed run of the same `run` left. Throws chorus::Error naming the file when there
  // is nothing to resume or the journal belongs to another run.
  OutputJournal(std::string target, OutputRun run, bool resume);
  ~OutputJournal();
  OutputJournal(const OutputJournal&) = delete;
  OutputJournal& operator=(const OutputJournal&) = delete;

  int frames_done() const { return done_; }
  bool replaced_unfinished_run() const { return replaced_; }
  // Appends frame `index` (== frames_done()); `values` holds one frame in the written layout.
  void write(int index, const float* values);
  // After the last frame: flushes, writes the HDF5 target if that is what was asked, removes
  // the journal.
  void finish();

  // The journal of a target (its file, without an HDF5 dataset).
  static std::string journal_path(const std::string& target);

 private:
  void sync(bool force);

  std::string target_, data_path_, journal_;
  OutputRun run_;
  std::size_t frame_values_ = 0, header_bytes_ = 0;
  int done_ = 0;
  bool replaced_ = false;
  std::FILE* data_ = nullptr;
  std::FILE* log_ = nullptr;
  double last_sync_ = 0;
};

}  // namespace chorus::io
