// task-arithmetic: base + lambda * sum_i w_i (x_i - base) (Ilharco et al. 2023, "Editing models
// with task arithmetic"; mergekit's `task_arithmetic`). Weights are not normalised: with N inputs,
// weights 1 and lambda 1/N it is the average; a negative weight subtracts a task.
#include "lofi/error.h"
#include "lofi/merge/method.h"

namespace lofi::merge {
namespace {

class TaskArithmetic : public Method {
 public:
  bool needs_base() const override { return true; }
  std::string summary() const override { return "base + lambda * sum of w_i * (input_i - base)"; }
  nlohmann::json describe(const MethodParams& p) const override { return {{"lambda", p.lambda}}; }

  torch::Tensor merge(Piece piece, const MethodParams& p) const override {
    const torch::Dtype dtype = compute_dtype(piece.inputs[0].scalar_type());
    torch::Tensor base = piece.base.to(dtype);
    torch::Tensor mixed = torch::zeros_like(base);
    for (size_t i = 0; i < piece.inputs.size(); ++i) mixed.add_(piece.inputs[i].to(dtype) - base, piece.weights[i]);
    if (p.lambda != 1.0) mixed.mul_(p.lambda);
    return mixed.add_(base);
  }
};

}  // namespace
}  // namespace lofi::merge

LOFI_MERGE_METHOD(task_arithmetic, "task-arithmetic", TaskArithmetic)
