#include "cli/table.h"

#include <algorithm>
#include <cstdio>
#include <iomanip>

namespace chorus::cli {

void Table::print(std::ostream& out) const {
  std::vector<std::size_t> width(header_.size(), 0);
  for (std::size_t i = 0; i < header_.size(); ++i) width[i] = header_[i].size();
  for (const auto& row : rows_)
    for (std::size_t i = 0; i < row.size() && i < width.size(); ++i) width[i] = std::max(width[i], row[i].size());
  auto line = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      out << (i ? "  " : "") << (i < 2 ? std::left : std::right) << std::setw(static_cast<int>(width[i])) << cell;
    }
    out << std::left << "\n";
  };
  std::size_t total = 0;
  for (auto w : width) total += w + 2;
  line(header_);
  out << std::string(total - 2, '-') << "\n";
  for (const auto& row : rows_) {
    if (row.empty()) out << std::string(total - 2, '-') << "\n";
    else line(row);
  }
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) { bytes /= 1000; ++u; }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

std::string human_count(double count) {
  const char* units[] = {"", "K", "M", "G", "T"};
  int u = 0;
  while (count >= 1000 && u < 4) { count /= 1000; ++u; }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : "%.2f %s", count, units[u]);
  return buf;
}

std::string fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

}  // namespace chorus::cli
