// Maps a model's output classes onto a test set's classes, as ImageNet-R/-A (a 200-class subset:
// those logits only) and ObjectNet (113 classes, several model classes per test class) need.
// Read from a small text file; applied to logits before top-k (classification.h).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lofi::eval {

// Test class t is predicted by model classes members[t]. A subset map has one member per class.
struct ClassMap {
  int64_t model_classes = 0;               // width of the model's logits, e.g. 1000
  std::vector<std::string> names;          // test class names, in label order, e.g. "goldfish"
  std::vector<std::vector<int64_t>> members;  // per test class, its model class indices
};

// The format, one test class per line, in label order ('#' starts a comment; blank lines skip):
//   NAME MODEL_CLASS [MODEL_CLASS ...]
// A MODEL_CLASS is an index in [0, MODEL_CLASSES) or one of MODEL_CLASS_NAMES (when given).
// A model class may belong to one test class only; names are unique.
ClassMap parse_class_map(const std::string& text, int64_t model_classes,
                         const std::vector<std::string>& model_class_names = {},
                         const std::string& origin = "class map");
ClassMap read_class_map(const std::string& path, int64_t model_classes,
                        const std::vector<std::string>& model_class_names = {});

// LOGITS (B, model_classes) -> (B, test classes): each test class scores the max of its members'
// logits (as the ObjectNet evaluation of the paper's code base does); for a subset this is the
// column selection.
torch::Tensor apply_class_map(const torch::Tensor& logits, const ClassMap& map);

}  // namespace lofi::eval
