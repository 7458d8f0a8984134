// Options several commands share: number checks, the merge engine's flags, the evaluation flags.
#pragma once
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lofi/family/sweeps.h"
#include "lofi/merge/engine.h"

namespace lofi::cli {

// Numbers on the command line, each refused in one line naming what was expected: a finite
// number within fp32's range (what weights and merge factors become), optionally at least MIN.
// CLI11's own number checks let "inf", "nan" and 1e39 through, and print DBL_MAX's 309 digits as
// the upper end of their range.
CLI::Validator number_check(std::optional<double> min = std::nullopt);
extern const CLI::Validator kFinite, kNonNegative, kPositive;

// Inputs, output and the engine's checks, shared by `average` and `merge`; VERB names the command in help.
void add_merge_flags(CLI::App& cmd, merge::MergeOptions& options, const std::string& verb);

// The evaluation flags of `eval`, `soup` and `interpolate`.
struct EvalFlags {
  std::string model, config, json;
  std::vector<std::string> ensemble, data, class_maps, sets;
  family::EvalSettings settings;
  int64_t max_images = 0;

  void add_to(CLI::App& cmd);
  // The request with --data and --class-map parsed and the settings given to both kinds of scorer.
  family::EvalRequest request() const;
  // Writes TEXT to --json's file, if one was given.
  void write_json(const std::string& text) const;
};

}  // namespace lofi::cli
