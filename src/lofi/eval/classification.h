// Image classification scores from logits: top-1/top-5 accuracy and mean cross-entropy,
// accumulated over batches, optionally through a ClassMap (subset or many-to-one), and a
// results row as the paper reports it: in-distribution, each shift, and the average over shifts.
// Pure functions on tensors: running the model is the caller's business.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lofi/eval/class_map.h"
#include "lofi/eval/table.h"

namespace lofi::eval {

struct ClassificationScore {
  double top1 = 0;    // fraction of examples whose label is the argmax, e.g. 0.81
  double top5 = 0;    // fraction whose label is among the 5 highest (all classes when fewer than 5)
  double loss = 0;    // mean cross-entropy in nats, over the (mapped) classes
  int64_t count = 0;  // examples scored
};

// Accumulates batches: LOGITS (B, C) and integer LABELS (B) in [0, C), where C is the map's
// test classes when a map is given (the map is copied; labels index its classes).
class ClassificationMeter {
 public:
  ClassificationMeter() = default;
  explicit ClassificationMeter(ClassMap map) : map_(std::move(map)), mapped_(true) {}
  void add(const torch::Tensor& logits, const torch::Tensor& labels);
  ClassificationScore score() const;

 private:
  ClassMap map_;
  bool mapped_ = false;
  int64_t count_ = 0, top1_ = 0, top5_ = 0;
  double loss_sum_ = 0;  // double: the sum over many batches must not lose float precision
};

// One batch's score, no accumulation.
ClassificationScore classification_score(const torch::Tensor& logits, const torch::Tensor& labels);

// One model's results: in-distribution and each shifted test set.
struct ClassificationRow {
  std::string model;                                                // e.g. "lo-fi (4 nodes)"
  ClassificationScore in_distribution;                              // e.g. finetune-val
  std::vector<std::pair<std::string, ClassificationScore>> shifts;  // e.g. {"sketch", ...}, in column order
  // Unweighted mean of the shifts' top-1, as the paper's "avg shifts" column; 0 without shifts.
  double shift_average_top1() const;
};

// Columns: "model", "in-dist top-1", one "NAME top-1" per shift, "avg shifts", then EXTRA.
std::vector<std::string> classification_columns(const std::vector<std::string>& shift_names,
                                                const std::vector<std::string>& extra = {});
// ROW's cells (its name, then top-1 as percent, one decimal) and its JSON record: what
// add_classification_row adds before the extras.
std::pair<std::vector<std::string>, nlohmann::json> classification_cells(const ClassificationRow& row);
// Adds ROW (top-1 as percent, one decimal) followed by EXTRA_CELLS; the JSON record holds every
// score (top-1, top-5, loss, count per set, the shift average) merged with EXTRA_RECORD. Fails when
// the row's shifts do not match the table's (by count and name).
void add_classification_row(ResultsTable& table, const ClassificationRow& row,
                            const std::vector<std::string>& extra_cells = {},
                            const nlohmann::json& extra_record = nlohmann::json::object());

}  // namespace lofi::eval
