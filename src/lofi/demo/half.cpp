#include "lofi/demo/half.h"

#include "lofi/error.h"
#include "lofi/eval/table.h"

namespace lofi::demo {
namespace {

// The models every half scores: its leading ones, the baseline, each lo-fi node, their average and
// ensemble, the synced arms, then its own arms.
std::vector<DemoModel> models_of(DemoHalf& half, const train::Config& ft, const Comparison& runs,
                                 const std::vector<SyncedArm>& synced, int workers) {
  std::vector<DemoModel> models = half.leading_models();
  models.push_back(DemoModel("baseline (data-parallel)", {runs.baseline_final}, Arm::baseline)
                       .cost(runs.baseline_seconds, runs.baseline_traffic));
  for (int k = 0; k < workers; ++k)
    models.push_back(DemoModel("lo-fi node " + std::to_string(k), {runs.node_finals[static_cast<size_t>(k)]}, Arm::lofi_node));
  models.push_back(DemoModel("lo-fi average", {runs.lofi_average}, Arm::lofi_average).cost(runs.lofi_seconds, runs.lofi_traffic));
  models.push_back(DemoModel("lo-fi ensemble (not a single model)", runs.node_finals));
  for (const auto& a : synced) {
    DemoModel m(a.method + " (" + a.how + ")", {a.model}, Arm::synced);
    m.cost(a.seconds, a.traffic);
    m.sync = a.sync, m.method = a.method;
    models.push_back(m);
  }
  for (auto& m : half.own_arms(ft)) models.push_back(std::move(m));
  return models;
}

const ModelScore& score_of(const std::vector<DemoModel>& models, const std::vector<ModelScore>& scores, Arm arm) {
  for (size_t i = 0; i < models.size(); ++i)
    if (models[i].arm == arm) return scores[i];
  fail("demo: no model of the arm the claims compare");
}

nlohmann::json claims_of(const HalfMetric& metric, const std::vector<DemoModel>& models, const std::vector<ModelScore>& scores) {
  HalfScores s;
  s.half = metric.half, s.metric = metric.name, s.shift_metric = metric.shift_name, s.higher_is_better = metric.higher_is_better;
  const ModelScore &baseline = score_of(models, scores, Arm::baseline), &average = score_of(models, scores, Arm::lofi_average);
  s.baseline_in = baseline.in_distribution, s.lofi_in = average.in_distribution;
  s.baseline_shift = baseline.shift, s.lofi_shift = average.shift;
  for (size_t i = 0; i < models.size(); ++i)
    if (models[i].arm == Arm::lofi_node) s.nodes_in.push_back(scores[i].in_distribution);
  for (const auto& m : models) {
    if (m.arm == Arm::baseline) s.baseline_bytes_sent = m.traffic->total;
    if (m.arm == Arm::lofi_average) s.lofi_bytes_between_nodes = m.traffic->between_nodes;
  }
  return make_claims(s);
}

// The communication spectrum: the baseline, the synced arms, lo-fi; what each scored and sent.
eval::ResultsTable spectrum_of(const HalfMetric& metric, const std::vector<DemoModel>& models,
                               const std::vector<ModelScore>& scores, int workers) {
  std::vector<SpectrumRow> rows;
  auto add = [&](const DemoModel& m, const ModelScore& s, const std::string& method, const std::string& sync, double bytes) {
    rows.push_back({method, sync, s.in_distribution, s.shift, bytes / workers, m.seconds});
  };
  for (size_t i = 0; i < models.size(); ++i)
    if (models[i].arm == Arm::baseline) add(models[i], scores[i], "baseline (data-parallel)", "every step", models[i].traffic->total);
  for (size_t i = 0; i < models.size(); ++i)
    if (models[i].arm == Arm::synced) add(models[i], scores[i], models[i].method, models[i].sync, models[i].traffic->between_nodes);
  for (size_t i = 0; i < models.size(); ++i)
    if (models[i].arm == Arm::lofi_average) add(models[i], scores[i], "lo-fi (average)", "never", models[i].traffic->between_nodes);
  return spectrum_table(rows, metric.column, metric.shift_column, metric.decimals);
}

}  // namespace

DemoSection run_half(DemoHalf& half, const HalfRun& run) {
  const train::Config ft = half.prepare();
  const Comparison runs = run_baseline_and_lofi(ft, run.out, run.workers, run.label);
  const std::vector<SyncedArm> synced = run_synced_arms(ft, run.out, run.workers, run.label, run.sync_every, run.warm_start_steps);
  const std::vector<DemoModel> models = models_of(half, ft, runs, synced, run.workers);

  std::vector<std::string> columns{"model"};
  for (auto& c : half.score_columns()) columns.push_back(std::move(c));
  columns.insert(columns.end(), {"bytes sent", "bytes between nodes", "wall time"});
  eval::ResultsTable table(columns);
  std::vector<ModelScore> scores;
  for (const auto& m : models) {
    ModelScore s = half.score(m);
    std::vector<std::string> cells{m.name};
    cells.insert(cells.end(), s.cells.begin(), s.cells.end());
    cells.push_back(m.traffic ? eval::format_bytes(m.traffic->total) : "");
    cells.push_back(m.traffic ? eval::format_bytes(m.traffic->between_nodes) : "");
    cells.push_back(m.seconds >= 0 ? format_seconds(m.seconds, 1) : "");
    nlohmann::json record = s.record;
    record["model"] = m.name;
    if (m.seconds >= 0) record["wall_seconds"] = m.seconds;
    if (m.traffic) record["bytes_sent"] = m.traffic->total, record["bytes_between_nodes"] = m.traffic->between_nodes;
    table.add_row(cells, record);
    scores.push_back(std::move(s));
  }

  const HalfMetric metric = half.metric();
  const eval::ResultsTable spectrum = spectrum_of(metric, models, scores, run.workers);
  DemoSection section;
  section.title = half.title();
  eval::ResultsFile& r = section.results;
  r.title = section.title, r.note = half.note();
  r.table = table.display(), r.rows = table.json(), r.claims = claims_of(metric, models, scores);
  r.spectrum_table = spectrum.display(), r.spectrum_note = kSpectrumNote;
  r.more = {{"workers", run.workers}, {"finetune_steps", ft.train.steps}, {"global_batch", ft.train.batch_size},
            {"spectrum", spectrum.json()}};
  section.table = half.caption() + "\n" + table.text();
  section.markdown = "## " + section.title + "\n\n" + half.note() + "\n\n" + table.markdown() + "\n";
  half.add_findings(models, section);  // lines after the table, keys of the half's own
  section.table += "\n" + metric.half + ": the communication spectrum (wall time projected across machines)\n" + spectrum.text();
  section.markdown += std::string("\n") + kSpectrumNote + "\n\n" + spectrum.markdown();
  return section;
}

}  // namespace lofi::demo
