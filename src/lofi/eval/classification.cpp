#include "lofi/eval/classification.h"

#include <algorithm>

#include "lofi/error.h"

namespace lofi::eval {
namespace {

constexpr const char* kShiftSuffix = " top-1";

void check_batch(const torch::Tensor& logits, const torch::Tensor& labels) {
  if (logits.dim() != 2 || logits.size(1) < 1)
    fail("classification: expected logits of shape (B, C) with C >= 1, found ", logits.sizes());
  if (labels.dim() != 1 || labels.size(0) != logits.size(0) || !at::isIntegralType(labels.scalar_type(), false))
    fail("classification: expected integer labels of shape (", logits.size(0), "), found ", labels.sizes(), " ",
         labels.scalar_type());
  if (labels.numel() && (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= logits.size(1)))
    fail("classification: labels must lie in [0, ", logits.size(1), "), found [", labels.min().item<int64_t>(), ", ",
         labels.max().item<int64_t>(), "]");
}

nlohmann::json score_json(const ClassificationScore& s) {
  return {{"top1", s.top1}, {"top5", s.top5}, {"loss", s.loss}, {"count", s.count}};
}

std::string percent(double fraction) { return format_fixed(100.0 * fraction, 1); }

}  // namespace

void ClassificationMeter::add(const torch::Tensor& raw_logits, const torch::Tensor& raw_labels) {
  torch::NoGradGuard no_grad;
  torch::Tensor logits = (mapped_ ? apply_class_map(raw_logits, map_) : raw_logits).to(torch::kFloat32);
  check_batch(logits, raw_labels);
  torch::Tensor labels = raw_labels.to(logits.device()).to(torch::kInt64);
  if (labels.numel() == 0) return;
  int64_t k = std::min<int64_t>(5, logits.size(1));
  torch::Tensor top = std::get<1>(logits.topk(k, /*dim=*/1));  // (B, k), best first
  torch::Tensor hit = top.eq(labels.unsqueeze(1));              // (B, k)
  top1_ += hit.select(1, 0).sum().item<int64_t>();
  top5_ += hit.any(1).sum().item<int64_t>();
  loss_sum_ += torch::nn::functional::cross_entropy(
                   logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                   .item<double>();
  count_ += labels.size(0);
}

ClassificationScore ClassificationMeter::score() const {
  ClassificationScore s;
  s.count = count_;
  if (count_ == 0) return s;
  s.top1 = static_cast<double>(top1_) / static_cast<double>(count_);
  s.top5 = static_cast<double>(top5_) / static_cast<double>(count_);
  s.loss = loss_sum_ / static_cast<double>(count_);
  return s;
}

ClassificationScore classification_score(const torch::Tensor& logits, const torch::Tensor& labels) {
  ClassificationMeter meter;
  meter.add(logits, labels);
  return meter.score();
}

double ClassificationRow::shift_average_top1() const {
  if (shifts.empty()) return 0;
  double sum = 0;
  for (const auto& shift : shifts) sum += shift.second.top1;
  return sum / static_cast<double>(shifts.size());
}

std::vector<std::string> classification_columns(const std::vector<std::string>& shift_names,
                                                const std::vector<std::string>& extra) {
  std::vector<std::string> columns = {"model", "in-dist top-1"};
  for (const auto& name : shift_names) columns.push_back(name + kShiftSuffix);
  columns.push_back("avg shifts");
  columns.insert(columns.end(), extra.begin(), extra.end());
  return columns;
}

std::pair<std::vector<std::string>, nlohmann::json> classification_cells(const ClassificationRow& row) {
  std::vector<std::string> cells = {row.model, percent(row.in_distribution.top1)};
  nlohmann::json record = {{"model", row.model}, {"in_distribution", score_json(row.in_distribution)}};
  nlohmann::json shifts = nlohmann::json::object();
  for (const auto& [name, score] : row.shifts) {
    cells.push_back(percent(score.top1));
    shifts[name] = score_json(score);
  }
  cells.push_back(percent(row.shift_average_top1()));
  record["shifts"] = shifts;
  record["shift_average_top1"] = row.shift_average_top1();
  return {cells, record};
}

void add_classification_row(ResultsTable& table, const ClassificationRow& row,
                            const std::vector<std::string>& extra_cells, const nlohmann::json& extra_record) {
  const auto& columns = table.columns();
  size_t expected = columns.size() - 3 - extra_cells.size();  // less model, in-dist, avg and the extras
  bool match = columns.size() >= 3 + extra_cells.size() && row.shifts.size() == expected;
  for (size_t i = 0; match && i < row.shifts.size(); ++i) match = columns[2 + i] == row.shifts[i].first + kShiftSuffix;
  if (!match) {
    std::string found;
    for (const auto& shift : row.shifts) found += (found.empty() ? "" : ", ") + shift.first;
    fail("add_classification_row: \"", row.model, "\" has shifts [", found, "] and ", extra_cells.size(),
         " extra cells, which do not match the table's columns");
  }
  auto [cells, record] = classification_cells(row);
  cells.insert(cells.end(), extra_cells.begin(), extra_cells.end());
  if (extra_record.is_object()) record.update(extra_record);
  table.add_row(std::move(cells), std::move(record));
}

}  // namespace lofi::eval
