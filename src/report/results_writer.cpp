#include "report/results_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/error.h"

namespace chorus::report {

ResultsWriter::ResultsWriter(const std::string& path, int top, std::vector<std::string> labels)
    : path_(path), top_(std::max(0, top)), labels_(std::move(labels)) {
  if (path == "-") {
    file_ = stdout;
  } else {
    file_ = std::fopen(path.c_str(), "w");
    if (!file_) fail(path, ": cannot write results (", std::strerror(errno), ")");
    owned_ = true;
  }
  for (auto& label : labels_) label = nlohmann::json(label).dump();  // escaped once, not per frame
  line_.reserve(4096);
}

ResultsWriter::~ResultsWriter() {
  if (owned_ && file_) std::fclose(file_);
}

int top_classes(const Tensor& out, int k, std::vector<int>& order) {
  const int classes = static_cast<int>(out.size());
  k = std::min(k, classes);
  order.resize(classes);
  std::iota(order.begin(), order.end(), 0);
  const float* p = out.data();
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return p[a] > p[b]; });
  return k;
}

void ResultsWriter::append_top(const Tensor& out) {
  const int k = top_classes(out, top_, order_);
  const float* p = out.data();
  line_ += '[';
  char number[64];
  for (int i = 0; i < k; ++i) {
    const int c = order_[i];
    std::snprintf(number, sizeof number, "%s{\"class\":%d,\"score\":%.6g", i ? "," : "", c, p[c]);
    line_ += number;
    if (c < static_cast<int>(labels_.size())) {
      line_ += ",\"label\":";
      line_ += labels_[c];
    }
    line_ += '}';
  }
  line_ += ']';
}

void ResultsWriter::write(const FrameResult& r, const std::vector<const Tensor*>& outputs,
                          const std::vector<std::string>& output_names) {
  char head[160];
  std::snprintf(head, sizeof head, "{\"frame\":%lld,\"captured_s\":%.6f,\"latency_ms\":%.3f,\"top\":",
                static_cast<long long>(r.frame), r.captured_s, r.latency_s * 1e3);
  line_ = head;
  if (outputs.size() == 1) {
    append_top(*outputs[0]);
  } else {
    line_ += '{';
    for (std::size_t k = 0; k < outputs.size(); ++k) {
      line_ += (k ? "," : "") + nlohmann::json(output_names[k]).dump() + ':';
      append_top(*outputs[k]);
    }
    line_ += '}';
  }
  line_ += "}\n";
  // Flushed per line: whoever follows the file sees each frame as it is done.
  if (std::fwrite(line_.data(), 1, line_.size(), file_) != line_.size() || std::fflush(file_) != 0)
    fail(path_ == "-" ? "standard output" : path_, ": cannot write results (", std::strerror(errno), ")");
}

}  // namespace chorus::report
