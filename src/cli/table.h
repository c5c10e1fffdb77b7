#pragma once
// Plain-text tables with aligned columns, and number formatting for reports.
#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace chorus::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void add_rule() { rows_.push_back({}); }
  // Columns after the first two are right-aligned (numbers).
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

std::string human_bytes(double bytes);   // "1.5 MB"
std::string human_count(double count);   // "15.5 G"
std::string fixed(double value, int decimals);

}  // namespace chorus::cli
