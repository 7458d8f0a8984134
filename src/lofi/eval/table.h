// A results table: rows of named cells, printed aligned for the terminal and written as
// Markdown and JSON. Knows nothing of models; callers fill it.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/text.h"

namespace lofi::eval {

class ResultsTable {
 public:
  explicit ResultsTable(std::vector<std::string> columns) : columns_(std::move(columns)) {}
  // CELLS in column order; NUMBERS (same order, null where text) go to the JSON.
  void add_row(std::vector<std::string> cells, nlohmann::json record);

  const std::vector<std::string>& columns() const { return columns_; }
  std::string markdown() const;
  std::string text() const;  // aligned, for the terminal
  nlohmann::json json() const { return records_; }
  // The table as shown: {"columns": [...], "cells": [[...], ...]}, for the HTML report.
  nlohmann::json display() const { return {{"columns", columns_}, {"cells", rows_}}; }

 private:
  std::vector<std::string> columns_;
  std::vector<std::vector<std::string>> rows_;
  nlohmann::json records_ = nlohmann::json::array();
};

using lofi::format_bytes;  // lofi/text.h: the one place numbers are formatted
using lofi::format_fixed;

}  // namespace lofi::eval
