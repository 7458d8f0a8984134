// One half of `lofi demo` as data and a few hooks; run_half() is the skeleton both halves share
// (and the arms to come fill): the baseline and lo-fi on one data budget, the middle of the
// spectrum, every model scored in-distribution and under shift, the claims found by arm, the
// spectrum table and the section for results.md / results.json.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lofi/demo/claims.h"
#include "lofi/demo/runs.h"
#include "lofi/train/config.h"

namespace lofi::demo {

// The arms the claims and the spectrum read, by name rather than by row.
enum class Arm { none, baseline, lofi_node, lofi_average, synced, lora_exact, lora_factors };

// A row of the half's table: a model (or an ensemble's members) and what its training cost.
struct DemoModel {
  DemoModel(std::string name_, std::vector<std::string> paths_, Arm arm_ = Arm::none)
      : name(std::move(name_)), paths(std::move(paths_)), arm(arm_) {}
  // What training it cost: measured time and the bytes its workers sent.
  DemoModel& cost(double wall_seconds, const Traffic& sent) { return seconds = wall_seconds, traffic = sent, *this; }

  std::string name;
  std::vector<std::string> paths;  // one checkpoint, or an ensemble's members
  Arm arm = Arm::none;
  double seconds = -1;             // measured training time; < 0: not shown
  std::optional<Traffic> traffic;
  std::string sync;                // a synced arm's "every 50 steps"
  std::string method;              // a synced arm's method, e.g. "DiLoCo"
};

// What scoring one model gives: its cells (after its name), its JSON record, and the two numbers
// the claims and the spectrum read, as the table shows them (perplexity, or top-1 in percent).
struct ModelScore {
  std::vector<std::string> cells;
  nlohmann::json record;
  double in_distribution = 0, shift = 0;
};

// What the two numbers mean, for the claims, the spectrum and the section.
struct HalfMetric {
  std::string half;                 // "language", "vision"
  std::string name, shift_name;     // claims: "perplexity", "avg shift perplexity"
  bool higher_is_better = false;
  std::string column, shift_column; // the spectrum's: "ppl computers (in-dist)", "avg shift ppl"
  int decimals = 3;
};

class DemoHalf {
 public:
  virtual ~DemoHalf() = default;
  virtual HalfMetric metric() const = 0;
  // Its data and its pretrained model (cached), and the fine-tuning config from them (run.dir the
  // half's output directory).
  virtual train::Config prepare() = 0;
  // Models shown before the baseline (the pretrained start), and arms of its own after the common
  // ones (trained here: LP-FT).
  virtual std::vector<DemoModel> leading_models() { return {}; }
  virtual std::vector<DemoModel> own_arms(const train::Config&) { return {}; }
  // The table's score columns (between "model" and the cost columns) and one model's scores.
  virtual std::vector<std::string> score_columns() const = 0;
  virtual ModelScore score(const DemoModel& model) = 0;
  // The section's heading, note, caption of its table, and what it adds after the table (text
  // lines, JSON keys): barrier heights, the pretrained model's own score.
  virtual std::string title() const = 0;
  virtual std::string note() const = 0;
  virtual std::string caption() const = 0;
  virtual void add_findings(const std::vector<DemoModel>& models, DemoSection& section) = 0;
};

// Where and how a half runs.
struct HalfRun {
  std::string out;          // its directory
  std::string label;        // prefix of its progress lines: "" or "vision "
  int workers = 4;          // the baseline's workers, lo-fi's nodes
  int64_t sync_every = 50;  // local SGD and DiLoCo; 0: leave them out
  int64_t warm_start_steps = 20;  // lo-fi with a shared warm start (at most half the steps); 0: leave it out
};

DemoSection run_half(DemoHalf& half, const HalfRun& run);

}  // namespace lofi::demo
