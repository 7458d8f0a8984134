#include "lofi/family/sweeps.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include "lofi/error.h"
#include "lofi/family/adapters.h"
#include "lofi/family/family.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/io/safetensors.h"
#include "lofi/io/temporaries.h"
#include "lofi/merge/adapters.h"
#include "lofi/merge/average.h"
#include "lofi/merge/interpolate.h"
#include "lofi/merge/nonfinite.h"
#include "lofi/merge/soup.h"
#include "lofi/model/hf.h"
#include "lofi/train/config.h"

namespace lofi::family {

namespace {

train::Config config_of(const std::string& path, const EvalRequest& request) {
  return train::config_for_model(path, request.config, request.sets);
}

}  // namespace

// The weights of PATH, refused by name when they are not those of FIRST (its first's, the model
// evaluated): another model's checkpoint would otherwise fail later, naming neither file.
io::NamedTensors load_like(const train::Config& config, const std::string& path, const io::NamedTensors& first,
                           const std::string& first_path, const std::string& what) {
  io::NamedTensors weights = load_weights(config, path);
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : weights) by_name[name] = &t;
  for (const auto& [name, t] : first) {
    auto it = by_name.find(name);
    if (it == by_name.end())
      fail(what, ": ", path, " lacks tensor '", name, "' of ", first_path, " (a checkpoint of another model?)");
    if (it->second->sizes() != t.sizes())
      fail(what, ": tensor '", name, "' is ", it->second->sizes(), " in ", path, " but ", t.sizes(), " in ", first_path);
    if (it->second->is_floating_point() != t.is_floating_point())
      fail(what, ": tensor '", name, "' is ", it->second->scalar_type(), " in ", path, " but ", t.scalar_type(), " in ", first_path);
  }
  if (weights.size() != first.size())
    fail(what, ": ", path, " holds ", weights.size(), " tensors, ", first_path, " ", first.size(), " (a checkpoint of another model?)");
  return weights;
}

eval::ResultsTable eval_table(const EvalRequest& r) {
  if (r.model.empty() && r.ensemble.empty()) fail("eval: give --model or --ensemble");
  const std::string& reference = r.model.empty() ? r.ensemble[0] : r.model;
  const train::Config config = config_of(reference, r);
  std::unique_ptr<TableScorer> scorer = family_of(config.model.arch).make_table_scorer(config, reference, r.inputs);
  std::vector<std::string> columns{"model"};
  for (const auto& c : scorer->columns()) columns.push_back(c);
  eval::ResultsTable table(columns);
  auto add = [&](const std::string& name, ScoreRow row) {
    row.cells.insert(row.cells.begin(), name);
    table.add_row(row.cells, {{"model", name}, {"datasets", row.datasets}});
  };
  if (!r.model.empty()) add(r.model, scorer->score_file(r.model));
  if (r.ensemble.empty()) return table;
  if (io::is_lora_adapter(r.ensemble.front())) {
    // Adapters average exactly as one adapter of rank N r (family/adapters.h): written to a
    // temporary file, scored, removed.
    for (const auto& path : r.ensemble) add(path, scorer->score_file(path));
    add("ensemble of " + std::to_string(r.ensemble.size()) + " (mean probabilities)", scorer->score_ensemble(r.ensemble));
    // Adapters of different runs ensemble, but their weight average means nothing: that row is
    // left out, and said why.
    std::vector<io::LoraAdapter> adapters;
    for (const auto& path : r.ensemble)
      if (io::is_lora_adapter(path)) adapters.push_back(io::read_lora_adapter(path));
    if (const std::string why = merge::adapter_mismatch(adapters); adapters.size() == r.ensemble.size() && !why.empty()) {
      std::fprintf(stderr, "eval --ensemble: no weight-average row: %s (only adapters of one run's nodes average meaningfully)\n",
                   why.c_str());
      return table;
    }
    const std::string merged = (std::filesystem::temp_directory_path() / ("lofi-eval-average-" + std::to_string(::getpid()) + ".safetensors")).string();
    io::register_temporary(merged, /*directory=*/false);
    struct Remove {
      std::string path;
      ~Remove() {
        std::error_code ec;
        std::filesystem::remove(path, ec);
        io::unregister_temporary(path);
      }
    } remove{merged};
    merge_adapter_files(r.ensemble, merged, AdapterMerge{});
    add("weight average of " + std::to_string(r.ensemble.size()) + " (adapters: exact, concat)", scorer->score_file(merged));
    return table;
  }
  std::vector<io::NamedTensors> members;
  for (const auto& path : r.ensemble) {
    if (io::is_lora_adapter(path))
      fail("eval --ensemble: ", path, " is a LoRA adapter and ", r.ensemble.front(), " a full model; ensemble adapters with ",
           "adapters (of one base), full models with full models");
    add(path, scorer->score_file(path));
    members.push_back(members.empty() ? load_weights(config, path)  // a Hugging Face directory too
                                      : load_like(config, path, members.front(), r.ensemble.front(), "eval --ensemble"));
  }
  std::vector<const io::NamedTensors*> ptrs;
  for (const auto& m : members) ptrs.push_back(&m);
  add("ensemble of " + std::to_string(members.size()) + " (mean probabilities)", scorer->score_ensemble(r.ensemble));
  add("weight average of " + std::to_string(members.size()),
      scorer->score(merge::weighted_average(ptrs, std::vector<double>(ptrs.size(), 1.0))));
  return table;
}

SoupReport greedy_soup(const std::vector<std::string>& candidates, const EvalRequest& r, const std::string& out,
                       bool allow_nonfinite) {
  if (r.inputs.data.size() != 1) fail("soup: give exactly one held-out --data NAME=PATH");
  const train::Config config = config_of(candidates.at(0), r);
  WeightsScorer scorer = make_weights_scorer(config, candidates.at(0), r.inputs);
  const std::string metric = "loss/" + r.inputs.data[0].name;
  merge::SoupResult soup = merge::greedy_soup(
      candidates, [&](const io::NamedTensors& w) { return scorer(w).at(metric); }, allow_nonfinite,
      [&, first = std::optional<io::NamedTensors>(), first_path = std::string()](const std::string& path) mutable {
        if (first) return load_like(config, path, *first, first_path, "soup");
        first_path = path;
        return *(first = load_weights(config, path));
      });
  SoupReport report;
  for (const auto& s : soup.steps)
    report.steps.add_row({s.candidate, eval::format_fixed(s.alone, 4), eval::format_fixed(s.with, 4), s.kept ? "yes" : "no"},
                         {{"candidate", s.candidate}, {"alone", s.alone}, {"with", s.with}, {"kept", s.kept}});
  report.chosen = soup.chosen;
  report.loss = soup.score;
  if (out.empty()) return report;
  io::Metadata meta{{"lofi.merge", "greedy-soup"}};
  if (model::is_hf_model_dir(candidates[0])) {
    meta["lofi.config"] = train::to_toml(config);  // the shape its config.json gave, for eval and export
  } else if (auto cfg = io::SafetensorsFile(candidates[0]).metadata(); cfg.count("lofi.config")) {
    meta["lofi.config"] = cfg["lofi.config"];
  }
  meta["lofi.soup.chosen"] = nlohmann::json(soup.chosen).dump();
  io::save_safetensors(out, soup.weights, meta);
  return report;
}

LineReport interpolate(const std::string& from, const std::string& to, int points, const EvalRequest& r) {
  const auto& datasets = r.inputs.data;
  const train::Config config = config_of(from, r);
  WeightsScorer scorer = make_weights_scorer(config, from, r.inputs);
  io::NamedTensors wa = load_weights(config, from), wb = load_like(config, to, wa, from, "interpolate");
  for (const auto& [weights, path] : {std::pair{&wa, &from}, std::pair{&wb, &to}})
    merge::refuse_nonfinite_weights(*weights, *path, "the weights of a diverged run: no line through them can be measured");
  const auto line = merge::evaluate_line(wa, wb, points, scorer);
  // A non-finite loss would make the barrier (a maximum) meaningless, never 0.
  for (const auto& p : line)
    for (const auto& [metric, value] : p.metrics)
      if (!std::isfinite(value))
        fail("interpolate: ", metric, " at alpha ", eval::format_fixed(p.alpha, 2), " is ", value,
             " with finite weights (their activations overflow), so no barrier can be measured between ", from, " and ", to);
  LineReport report;
  std::vector<std::string> columns{"alpha"};
  for (const auto& d : datasets) columns.push_back(d.name + " loss");
  report.table = eval::ResultsTable(columns);
  for (const auto& p : line) {
    std::vector<std::string> cells{eval::format_fixed(p.alpha, 2)};
    for (const auto& d : datasets) cells.push_back(eval::format_fixed(p.metrics.at("loss/" + d.name), 4));
    report.table.add_row(cells, {{"alpha", p.alpha}, {"metrics", p.metrics}});
  }
  report.json = merge::line_json(from, to, line);
  for (const auto& d : datasets) {
    const double h = report.json["barrier"]["loss/" + d.name];
    report.barriers.push_back("barrier height on " + d.name + ": " + eval::format_fixed(h, 4) + " nats" +
                              (h > 0.01 ? "  (averaging these two is not safe here)" : ""));
  }
  return report;
}

}  // namespace lofi::family
