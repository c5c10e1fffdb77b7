#pragma once
// `chorus run --results FILE.jsonl`: one JSON line per processed frame as it leaves the sink
// (frame number in the input, capture time, latency, the top classes with their labels), so
// that a robot or a dashboard can follow a live run. "-" writes to standard output.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace chorus::report {

// The `k` largest of an output's values, largest first, as their indices: the first
// min(k, size) entries of `order` (resized to the output's size; kept by the caller so that
// frames allocate nothing). Returns how many there are.
int top_classes(const Tensor& out, int k, std::vector<int>& order);

struct FrameResult {
  std::int64_t frame = 0;   // its number in the input (a real-time feed skips dropped ones)
  double captured_s = 0;    // when it was captured, seconds from the run's first capture
  double latency_s = 0;     // from capture to result
};

class ResultsWriter {
 public:
  // Throws chorus::Error naming the file when it cannot be written. `top`: classes per line
  // (0: none, the lines give frame and latency only); `labels`: class names (may be empty).
  ResultsWriter(const std::string& path, int top, std::vector<std::string> labels);
  ~ResultsWriter();
  ResultsWriter(const ResultsWriter&) = delete;
  ResultsWriter& operator=(const ResultsWriter&) = delete;

  // One line for one frame's outputs (`output_names` as the model names them; one output
  // writes its classes as "top", several as "top" per output name).
  void write(const FrameResult& result, const std::vector<const Tensor*>& outputs,
             const std::vector<std::string>& output_names);

 private:
  void append_top(const Tensor& out);

  std::string path_;
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  int top_;
  std::vector<std::string> labels_;  // as JSON strings, escaped once
  std::vector<int> order_;  // kept from frame to frame
  std::string line_;
};

}  // namespace chorus::report
