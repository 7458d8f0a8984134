// What the row-wise norms' backward passes (rms_norm.cpp, layer_norm.cpp) share: a scale's or a
// bias's gradient summed per chunk of rows (per block on a GPU), then over the chunks in order.
#pragma once
#include <torch/torch.h>

namespace lofi::kernels {

// Rows of the CPU's chunks: one CPU task each.
constexpr int64_t kRowsPerChunk = 64;
// The CUDA backward's grid: one partial sum per block.
constexpr int kCudaBackwardBlocks = 512;

// How many partial sums ROWS rows on X's device take: chunks of kRowsPerChunk on a CPU, blocks of
// the grid on a GPU.
inline int64_t row_chunks(const torch::Tensor& x, int64_t rows) {
  return x.is_cuda() ? std::min<int64_t>(rows, kCudaBackwardBlocks) : (rows + kRowsPerChunk - 1) / kRowsPerChunk;
}

// PARTIAL (chunks, C) summed over its rows: on a CPU in row order, so the result is the same
// whatever the thread count; on a GPU by ATen.
inline torch::Tensor sum_of_partials(const torch::Tensor& partial) {
  if (partial.is_cuda()) return partial.sum(0);
  torch::Tensor total = partial[0].clone();  // (C)
  float* d = total.data_ptr<float>();
  const float* p = partial.const_data_ptr<float>();
  const int64_t chunks = partial.size(0), width = partial.size(1);
  for (int64_t c = 1; c < chunks; ++c)
    for (int64_t i = 0; i < width; ++i) d[i] += p[c * width + i];
  return total;
}

}  // namespace lofi::kernels
