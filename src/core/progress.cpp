#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace chorus {

ProgressBar::ProgressBar(int total, std::string unit, double delay_seconds)
    : total_(total), unit_(std::move(unit)), delay_(delay_seconds), start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(int done) {
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - start_).count();
  if (elapsed < delay_ || !isatty(STDERR_FILENO)) return;
  if (shown_ && std::chrono::duration<double>(now - last_draw_).count() < 0.2 && (total_ <= 0 || done < total_)) return;
  last_draw_ = now;
  shown_ = true;
  const std::string detail = detail_ ? detail_() : std::string();
  if (total_ <= 0) {
    std::fprintf(stderr, "\r%d %s  %.1f/s  %s ", done, unit_.c_str(), done / elapsed, detail.c_str());
    std::fflush(stderr);
    return;
  }
  const int width = 30;
  int filled = total_ > 0 ? width * done / total_ : width;
  double rate = done / elapsed;
  double eta = rate > 0 ? (total_ - done) / rate : 0;
  std::fprintf(stderr, "\r[%.*s%*s] %d/%d %s  %.1f/s  eta %.0fs %s", filled, "==============================",
               width - filled, "", done, total_, unit_.c_str(), rate, eta, detail.c_str());
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (shown_) std::fprintf(stderr, "\n");
  shown_ = false;
}

}  // namespace chorus
