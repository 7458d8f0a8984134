// What `lofi eval`, `soup` and `interpolate` compute, whichever model family a checkpoint holds:
// each returns its table and JSON, and the CLI prints and writes them. A model's config comes from
// train::config_for_model (its checkpoint's, a Hugging Face directory's, or --config).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/eval/table.h"
#include "lofi/family/scorer.h"

namespace lofi::family {

// The model(s) to score and how: --model and/or --ensemble, --config, --set, --data and the rest.
struct EvalRequest {
  std::string model;                  // a checkpoint or a Hugging Face model directory
  std::vector<std::string> ensemble;  // scored one by one, then as an ensemble and as a weight average
  std::string config;                 // a config giving the shape (default: the checkpoint's own)
  std::vector<std::string> sets;      // "section.key=value" overrides
  ScorerInputs inputs;
};

// A row for --model, or for each --ensemble member, then the members' output-space ensemble and
// their weight average; the columns are the model family's (perplexity or top-1/top-5).
eval::ResultsTable eval_table(const EvalRequest& request);

struct SoupReport {
  eval::ResultsTable steps{{"candidate", "held-out loss alone", "soup loss with it", "kept"}};
  std::vector<std::string> chosen;
  double loss = 0;
  nlohmann::json json() const { return {{"steps", steps.json()}, {"chosen", chosen}, {"loss", loss}}; }
};

// Greedy soup of CANDIDATES by the held-out loss on the request's one --data set; with OUT, the
// soup is written there with the first candidate's config and the chosen ingredients.
SoupReport greedy_soup(const std::vector<std::string>& candidates, const EvalRequest& request, const std::string& out,
                       bool allow_nonfinite);

struct LineReport {
  eval::ResultsTable table{{"alpha"}};
  nlohmann::json json;                // merge::line_json: the points and each dataset's barrier
  std::vector<std::string> barriers;  // "barrier height on NAME: 0.0123 nats", flagged when unsafe
};

// The held-out losses at POINTS evenly spaced weights on the line from FROM (alpha 0) to TO (alpha 1).
LineReport interpolate(const std::string& from, const std::string& to, int points, const EvalRequest& request);

}  // namespace lofi::family
