// What ran in a forward pass, read from the autograd graph it left: tests that a model takes a
// fused op rather than the composite it replaces (the results are the same either way).
#pragma once
#include <torch/torch.h>

#include <string>
#include <unordered_set>
#include <vector>

namespace lofi::test {

// How many nodes of the graph behind OUT have a name (the op's, or a custom Function's type)
// containing PART.
inline int64_t graph_nodes_named(const torch::Tensor& out, const std::string& part) {
  std::vector<torch::autograd::Node*> todo{out.grad_fn().get()};
  std::unordered_set<torch::autograd::Node*> seen;
  int64_t found = 0;
  while (!todo.empty()) {
    torch::autograd::Node* node = todo.back();
    todo.pop_back();
    if (node == nullptr || !seen.insert(node).second) continue;
    if (node->name().find(part) != std::string::npos) ++found;
    for (const torch::autograd::Edge& edge : node->next_edges()) todo.push_back(edge.function.get());
  }
  return found;
}

}  // namespace lofi::test
