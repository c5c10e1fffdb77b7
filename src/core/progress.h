#pragma once
// A progress bar on stderr for runs longer than a few seconds; silent on short runs and
// when stderr is not a terminal (logs, CI).
#include <chrono>
#include <string>

namespace chorus {

class ProgressBar {
 public:
  ProgressBar(int total, std::string unit, double delay_seconds = 3.0);
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
};

}  // namespace chorus
