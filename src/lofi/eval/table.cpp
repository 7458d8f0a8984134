#include "lofi/eval/table.h"

#include <algorithm>
#include <cstdio>

namespace lofi::eval {

void ResultsTable::add_row(std::vector<std::string> cells, nlohmann::json record) {
  cells.resize(columns_.size());
  rows_.push_back(std::move(cells));
  records_.push_back(std::move(record));
}

std::string ResultsTable::markdown() const {
  std::string out = "|";
  for (const auto& c : columns_) out += " " + c + " |";
  out += "\n|";
  for (size_t i = 0; i < columns_.size(); ++i) out += i == 0 ? " --- |" : " ---: |";
  out += "\n";
  for (const auto& row : rows_) {
    out += "|";
    for (const auto& cell : row) out += " " + cell + " |";
    out += "\n";
  }
  return out;
}

std::string ResultsTable::text() const {
  std::vector<size_t> width(columns_.size());
  for (size_t i = 0; i < columns_.size(); ++i) {
    width[i] = columns_[i].size();
    for (const auto& row : rows_) width[i] = std::max(width[i], row[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) {
      std::string pad(width[i] - cells[i].size(), ' ');
      out += i == 0 ? cells[i] + pad : "  " + pad + cells[i];
    }
    return out + "\n";
  };
  std::string out = line(columns_);
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  out += std::string(total - 2, '-') + "\n";
  for (const auto& row : rows_) out += line(row);
  return out;
}

}  // namespace lofi::eval
