// Held-out metrics of a weight set, whichever kind of model a checkpoint holds: the scorer that
// `soup` and `interpolate` sweep with. Language models give "loss/NAME" on token shards;
// classifiers give "loss/NAME" and "top1/NAME" on image folders (through optional class maps).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "lofi/family/image_evaluator.h"
#include "lofi/family/lm_evaluator.h"

namespace lofi::family {

using WeightsScorer = std::function<std::map<std::string, double>(const io::NamedTensors&)>;

struct ScorerInputs {
  std::vector<NamedPath> data;        // NAME=PATH: token shards, or image folders for classifiers
  std::vector<NamedPath> class_maps;  // NAME=FILE: a class map for image set NAME (classifiers only)
  EvalSettings lm;
  ImageEvalSettings images;
};

// The test sets of INPUTS for a classifier, each with its class map; fails on a map naming no set.
std::vector<ImageTestSet> image_test_sets(const ScorerInputs& inputs);

// A scorer for models shaped as CONFIG, by its model family (family/family.h); REFERENCE is a
// checkpoint of that model (a classifier's class names come from it).
WeightsScorer make_weights_scorer(const train::Config& config, const std::string& reference, const ScorerInputs& inputs);

}  // namespace lofi::family
