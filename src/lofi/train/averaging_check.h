#pragma once
// Is averaging safe here? At the end of a lo-fi job, the merging node scores the average and each
// node's final on data.val (train.eval_batches batches, the periodic evaluation's) and says whether
// the average beats every node and the mean node, by how much, and what to try when it does not.
// The paper's result holds where node solutions stay in one basin (a strong pretrained start and
// gentle fine-tuning); this check tells a user which side of that line their run is on.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lofi::train {

struct NodeFinal {
  int64_t node = 0;
  std::string path;
};

// VALIDATE scores one weights file: the task's validation record (val_loss, val_top1 for
// classifiers, val_acc for a language model with data.val_task). The verdict is judged on top-1,
// else task accuracy, else loss:
// {"metric", "label", "scale" (shown as scale x value), "higher_is_better", "average", "nodes": {"0": v, ...}, "best_node", "mean_node",
//  "beats_every_node", "beats_mean_node", "single_node" (one final: the average is it), "ties_best_node",
//  "margin_over_best", "margin_over_mean", "eval_batches",
//  "average_scores": the average's whole validation record}.
nlohmann::json check_averaging(const std::vector<NodeFinal>& finals, const std::string& average,
                               const std::function<nlohmann::json(const std::string&)>& validate, int64_t eval_batches);

// The verdict in words, for the terminal: one line, and a second with what to try when the
// average does not beat every node.
std::string averaging_check_text(const nlohmann::json& check);

}  // namespace lofi::train
