// lofi's fused CPU ops against the same arithmetic as LibTorch's ops (the kernels PyTorch eager
// runs), forward and backward, side by side in one process on every core: the residual add and
// RMSNorm of a Llama block (kernels::add_rms_norm) against an add and LibTorch's rms_norm, and
// against an add and lofi's own RMSNorm. Run by `make bench` (bench/run.sh); never by CI.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>

#include "lofi/kernels/rms_norm.h"

namespace {

// Milliseconds of one forward and backward of F(x, r, w) -> {sum, norm}, the best of 5 rounds of
// ITERS; the gradients of both outputs are given, as in a block (the stream's and the MLP's).
using AddNorm = std::function<std::pair<torch::Tensor, torch::Tensor>(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>;
double time_ms(const AddNorm& f, int64_t rows, int64_t width, int iters) {
  torch::manual_seed(0);
  const torch::Tensor x0 = torch::randn({rows, width}), r0 = torch::randn({rows, width});
  const torch::Tensor w = torch::rand({width}).add(0.5).requires_grad_(true);
  const torch::Tensor g_sum = torch::randn({rows, width}), g_norm = torch::randn({rows, width});
  double best = 1e30;
  for (int round = 0; round < 5; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) {
      const torch::Tensor x = x0.detach().requires_grad_(true), r = r0.detach().requires_grad_(true);
      auto [sum, norm] = f(x, r, w);
      torch::autograd::backward({sum, norm}, {g_sum, g_norm});
    }
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / iters);
  }
  return best;
}

}  // namespace

int main() {
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  const double eps = 1e-5;
  const AddNorm fused = [&](const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w) {
    return lofi::kernels::add_rms_norm(x, r, w, eps);
  };
  const AddNorm libtorch = [&](const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w) {
    const torch::Tensor sum = x + r;
    return std::pair{sum, torch::rms_norm(sum, {w.size(0)}, w, eps)};
  };
  const AddNorm lofi_norm = [&](const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w) {
    const torch::Tensor sum = x + r;
    return std::pair{sum, lofi::kernels::rms_norm(sum, w, eps)};
  };
  std::printf("\nresidual add + RMSNorm, fp32, forward + backward (%d threads, best of 5)\n", threads);
  std::printf("%-16s %14s %14s %16s %10s %10s\n", "rows x width", "LibTorch ms", "lofi ms", "lofi unfused ms", "ratio", "target");
  for (const auto& [rows, width] : {std::pair<int64_t, int64_t>{2048, 512}, {8192, 512}, {2048, 2048}}) {
    const int iters = static_cast<int>(std::max<int64_t>(10, 200 * 2048 * 512 / (rows * width)));
    const double t_libtorch = time_ms(libtorch, rows, width, iters), t_fused = time_ms(fused, rows, width, iters);
    const double t_unfused = time_ms(lofi_norm, rows, width, iters);
    std::printf("%6ld x %-7ld %14.3f %14.3f %16.3f %9.2fx %10s %s\n", static_cast<long>(rows), static_cast<long>(width), t_libtorch,
                t_fused, t_unfused, t_libtorch / t_fused, ">= 1.00x", t_libtorch / t_fused >= 1.0 ? "met" : "MISSED");
  }
  std::printf("ratio: LibTorch's add + rms_norm / lofi's add_rms_norm; lofi unfused: the add, then lofi's RMSNorm\n");
}
