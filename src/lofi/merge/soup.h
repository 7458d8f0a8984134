// Greedy soup (Wortsman et al., "Model soups", 2022): rank candidates by their own held-out
// score, start from the best, and add each next candidate only if the uniform average of the
// soup with it scores better. Model-agnostic: the caller supplies the scorer.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "lofi/io/safetensors.h"

namespace lofi::merge {

// Held-out score of a set of weights; LOWER is better (a loss, or minus an accuracy).
using Scorer = std::function<double(const io::NamedTensors&)>;

struct SoupStep {
  std::string candidate;
  double alone = 0;     // the candidate's own score
  double with = 0;      // the soup's score with it added (the first: its own)
  bool kept = false;
};

struct SoupResult {
  std::vector<SoupStep> steps;       // in ranked order
  std::vector<std::string> chosen;   // ingredients of the final soup
  double score = 0;                  // the final soup's score
  io::NamedTensors weights;          // the final soup
};

// A candidate's weights; the default reads a safetensors file as it is.
using WeightsLoader = std::function<io::NamedTensors(const std::string& path)>;

// Candidates holding NaN or Inf are refused unless ALLOW_NONFINITE (then they rank last). LOAD
// reads a candidate (a model family's reader, say, for published model directories).
SoupResult greedy_soup(const std::vector<std::string>& candidates, const Scorer& score, bool allow_nonfinite = false,
                       const WeightsLoader& load = {});

}  // namespace lofi::merge
