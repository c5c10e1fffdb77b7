#pragma once
// A progress bar on stderr for runs longer than a few seconds; silent on short runs and
// when stderr is not a terminal (logs, CI).
#include <chrono>
#include <functional>
#include <string>

namespace chorus {

// A total of 0 or less (not known: a video stream) shows the count and the rate instead of a bar.
class ProgressBar {
 public:
  ProgressBar(int total, std::string unit, double delay_seconds = 3.0);
  // More to show after the rate ("12 dropped"), asked for only when the line is drawn.
  void set_detail(std::function<std::string()> detail) { detail_ = std::move(detail); }
  ~ProgressBar();
  void update(int done);
  void finish();

 private:
  int total_;
  std::string unit_;
  double delay_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  bool shown_ = false;
  std::function<std::string()> detail_;
};

}  // namespace chorus
