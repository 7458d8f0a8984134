// Options several commands share: number checks, the merge engine's flags, the evaluation flags,
// the chat template's.
#pragma once
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lofi/data/chat_template.h"
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

// --adapter-merge, for `average` and `merge` over LoRA adapters (family/adapters.h).
struct AdapterMergeFlags {
  std::vector<std::string> mode{"concat"};  // "concat", "dense", "factors", or "svd" R

  void add_to(CLI::App& cmd);
  // When OPTIONS' inputs are LoRA adapters, merges them as --adapter-merge says and returns true;
  // false for full checkpoints (the caller's merge runs).
  bool merge_if_adapters(const merge::MergeOptions& options) const;
};

// The evaluation flags of `eval`, `soup` and `interpolate`.
struct EvalFlags {
  std::string model, config, json;
  std::vector<std::string> ensemble, data, class_maps, sets, tasks;
  family::EvalSettings settings;
  int64_t max_images = 0;

  void add_to(CLI::App& cmd);
  // The request with --data and --class-map parsed and the settings given to both kinds of scorer.
  family::EvalRequest request() const;
  // Writes TEXT to --json's file, if one was given.
  void write_json(const std::string& text) const;
};

// --chat-template and --chat-template-kwargs, for `prepare --chat` and `generate --chat`.
struct ChatTemplateFlags {
  std::string file, kwargs;

  void add_to(CLI::App& cmd);
  bool given() const { return !file.empty() || !kwargs.empty(); }
  // The choice, --chat-template-kwargs parsed (refused by name when it is not a JSON object).
  data::ChatTemplateChoice choice() const;
};

}  // namespace lofi::cli
