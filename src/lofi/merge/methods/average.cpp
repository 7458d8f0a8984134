// average: sum_i w_i x_i / sum_i w_i — lo-fi's merge (mergekit's `linear`). Half precision
// accumulates in fp32, fp32 in fp64, so the average of identical inputs is exact.
#include <numeric>

#include "lofi/merge/method.h"

namespace lofi::merge {
namespace {

class Average : public Method {
 public:
  bool normalises_weights() const override { return true; }
  std::string summary() const override { return "weighted mean of the inputs (lo-fi's merge; mergekit's linear)"; }

  torch::Tensor merge(Piece piece, const MethodParams&) const override {
    const std::vector<double>& w = piece.weights;
    const double total = std::accumulate(w.begin(), w.end(), 0.0);
    const torch::Dtype in_dtype = piece.inputs[0].scalar_type();
    const int64_t n = piece.inputs[0].numel();
    // Reused per thread: a fresh buffer per chunk would cost a page fault per 4 KB.
    thread_local std::vector<torch::Tensor> buffers;
    const torch::Dtype acc_dtype = in_dtype == torch::kFloat16 || in_dtype == torch::kBFloat16 ? torch::kFloat32 : torch::kFloat64;
    const bool cpu = piece.inputs[0].is_cpu();
    torch::Tensor sum = cpu ? reused_buffer(buffers, 0, n, acc_dtype) : torch::empty({n}, piece.inputs[0].options().dtype(acc_dtype));
    for (size_t i = 0; i < piece.inputs.size(); ++i) {
      const torch::Tensor& in = piece.inputs[i];
      if (in_dtype == torch::kFloat32 && cpu) {
        // By hand: LibTorch's mixed-dtype in-place add (fp64 += w * fp32) takes a generic
        // casting path; this loop vectorises.
        double* acc = sum.data_ptr<double>();
        const float* x = in.data_ptr<float>();
        if (i == 0)
          for (int64_t j = 0; j < n; ++j) acc[j] = w[0] * static_cast<double>(x[j]);
        else
          for (int64_t j = 0; j < n; ++j) acc[j] += w[i] * static_cast<double>(x[j]);
      } else if (i == 0) {
        sum.copy_(in).mul_(w[0]);
      } else {
        sum.add_(in, w[i]);
      }
    }
    return sum.div_(total);
  }
};

}  // namespace
}  // namespace lofi::merge

LOFI_MERGE_METHOD(average, "average", Average)
