#include "lofi/train/averaging_check.h"

#include <algorithm>
#include <cstdio>

#include "lofi/error.h"

namespace lofi::train {
namespace {

// What a verdict is judged on: the first of these the validation record holds.
struct Metric {
  const char* key;    // in the validation record
  const char* name;   // the check's "metric"
  const char* label;  // as tables and lines show it
  bool higher_is_better;
  double scale;       // shown as scale x value (fractions in percent)
};
constexpr Metric kMetrics[] = {{"val_top1", "top-1", "validation top-1 %", true, 100},
                               {"val_acc", "accuracy", "data.val_task accuracy %", true, 100},
                               {"val_loss", "loss", "validation loss", false, 1}};

}  // namespace

nlohmann::json check_averaging(const std::vector<NodeFinal>& finals, const std::string& average,
                               const std::function<nlohmann::json(const std::string&)>& validate, int64_t eval_batches) {
  if (finals.empty()) fail("check_averaging: no node finals");
  const nlohmann::json avg_record = validate(average);
  const Metric* metric = nullptr;
  for (const Metric& m : kMetrics)
    if (!metric && avg_record.contains(m.key)) metric = &m;
  if (!metric) fail("check_averaging: the validation of ", average, " gave no val_top1, val_acc or val_loss");
  const std::string key = metric->key;
  const bool up = metric->higher_is_better;
  auto better = [up](double a, double b) { return up ? a > b : a < b; };
  nlohmann::json check{{"metric", metric->name},  {"label", metric->label},        {"scale", metric->scale},
                       {"higher_is_better", up},  {"eval_batches", eval_batches}, {"average", avg_record[key]},
                       {"average_scores", avg_record}};
  double best = 0, sum = 0;
  for (size_t i = 0; i < finals.size(); ++i) {
    const double v = validate(finals[i].path).at(key).get<double>();
    check["nodes"][std::to_string(finals[i].node)] = v;
    if (i == 0 || better(v, best)) best = v;
    sum += v;
  }
  const double mean = sum / static_cast<double>(finals.size()), a = avg_record[key].get<double>();
  check["best_node"] = best;
  check["mean_node"] = mean;
  check["beats_every_node"] = better(a, best);
  check["beats_mean_node"] = better(a, mean);
  // One node's average is that node, and an exact tie (a task of a few items) shows no harm: no
  // verdict against averaging in either.
  check["single_node"] = finals.size() == 1;
  check["ties_best_node"] = a == best;
  check["margin_over_best"] = up ? a - best : best - a;  // > 0: the average is better
  check["margin_over_mean"] = up ? a - mean : mean - a;
  return check;
}

std::string averaging_check_text(const nlohmann::json& c) {
  const bool top1 = c.value("metric", "") == "top-1";
  const double scale = c.value("scale", top1 ? 100.0 : 1.0);  // fractions in percent, as the tables show them
  const bool percent = scale != 1.0;
  auto v = [&](const char* key) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), percent ? "%.2f" : "%.4f", scale * c.value(key, 0.0));
    return std::string(buf);
  };
  const std::string metric = c.value("label", top1 ? "validation top-1 %" : "validation loss");
  std::string nodes;
  std::vector<std::pair<long, double>> by_node;  // JSON keys sort as text: "10" before "2"
  for (const auto& [k, value] : c["nodes"].items()) by_node.emplace_back(std::stol(k), value.get<double>());
  std::sort(by_node.begin(), by_node.end());
  for (const auto& [k, value] : by_node) {
    char buf[48];
    std::snprintf(buf, sizeof(buf), percent ? "%s%ld %.2f" : "%s%ld %.4f", nodes.empty() ? "" : ", ", k, scale * value);
    nodes += buf;
  }
  const std::string over = c.value("metric", "") == "accuracy" ? "" : ", " + std::to_string(c.value("eval_batches", 0)) + " batches of data.val";
  std::string text = "averaging check (" + metric + over + "): average " + v("average") + "; nodes " + nodes + " (best " + v("best_node") +
                     ", mean " + v("mean_node") + "): ";
  if (c.value("beats_every_node", false))
    return text + "the average beats every node, by " + v("margin_over_best") + " over the best and " +
           v("margin_over_mean") + " over the mean node";
  if (c.value("single_node", false)) return text + "one node finished, so the average is that node: nothing to compare";
  if (c.value("ties_best_node", false))
    return text + "the average ties the best node" +
           (c.value("beats_mean_node", false) ? " and beats the mean node by " + v("margin_over_mean") : std::string()) +
           " (no sign the nodes left their basin; a finer metric, such as data.val's loss, would tell them apart)";
  text += "the average does NOT beat every node";
  text += c.value("beats_mean_node", false) ? " (it beats the mean node by " + v("margin_over_mean") + ")"
                                            : ", nor the mean node";
  return text + "\nthe nodes left the basin they started in, and averaging them is not safe here. Try a lower "
                "train.lr, fewer train.steps, " +
         std::string(top1 ? "train.head_init = \"lp\" for a new classification head, " : "") +
         "or dist.sync_every = H to average during training";
}

}  // namespace lofi::train
