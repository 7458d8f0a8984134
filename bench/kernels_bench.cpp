// lofi's fused CPU ops against the same arithmetic as LibTorch's ops (the kernels PyTorch eager
// runs), forward and backward, side by side in one process on every core: the residual add and
// RMSNorm of a Llama block (kernels::add_rms_norm) against an add and LibTorch's rms_norm, and
// against an add and lofi's own RMSNorm; the residual add and LayerNorm of an OPT, GPT-2 or ViT
// block (kernels::add_layer_norm) against an add and LibTorch's layer_norm. Run by `make bench`
// (bench/run.sh); never by CI.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>

#include "lofi/kernels/layer_norm.h"
#include "lofi/kernels/rms_norm.h"

namespace {

// Milliseconds of one forward and backward of F(x, r, w, b) -> {sum, norm}, the best of 5 rounds of
// ITERS; the gradients of both outputs are given, as in a block (the stream's and the MLP's).
using AddNorm = std::function<std::pair<torch::Tensor, torch::Tensor>(const torch::Tensor&, const torch::Tensor&,
                                                                      const torch::Tensor&, const torch::Tensor&)>;
double time_ms(const AddNorm& f, int64_t rows, int64_t width, int iters) {
  torch::manual_seed(0);
  const torch::Tensor x0 = torch::randn({rows, width}), r0 = torch::randn({rows, width});
  const torch::Tensor w = torch::rand({width}).add(0.5).requires_grad_(true), b = torch::randn({width}).requires_grad_(true);
  const torch::Tensor g_sum = torch::randn({rows, width}), g_norm = torch::randn({rows, width});
  double best = 1e30;
  for (int round = 0; round < 5; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) {
      const torch::Tensor x = x0.detach().requires_grad_(true), r = r0.detach().requires_grad_(true);
      auto [sum, norm] = f(x, r, w, b);
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
  using T = const torch::Tensor&;
  const AddNorm rms_fused = [&](T x, T r, T w, T) { return lofi::kernels::add_rms_norm(x, r, w, eps); };
  const AddNorm rms_libtorch = [&](T x, T r, T w, T) {
    const torch::Tensor sum = x + r;
    return std::pair{sum, torch::rms_norm(sum, {w.size(0)}, w, eps)};
  };
  const AddNorm rms_unfused = [&](T x, T r, T w, T) {
    const torch::Tensor sum = x + r;
    return std::pair{sum, lofi::kernels::rms_norm(sum, w, eps)};
  };
  const AddNorm ln_fused = [&](T x, T r, T w, T b) { return lofi::kernels::add_layer_norm(x, r, w, b, eps); };
  const AddNorm ln_libtorch = [&](T x, T r, T w, T b) {
    const torch::Tensor sum = x + r;
    return std::pair{sum, torch::layer_norm(sum, {w.size(0)}, w, b, eps)};
  };
  struct Row {
    const char* name;
    const AddNorm *libtorch, *fused, *unfused;  // unfused: lofi's own norm after an add, where it has one
  };
  std::printf("\nresidual add + norm, fp32, forward + backward (%d threads, best of 5)\n", threads);
  std::printf("%-26s %12s %10s %16s %9s %10s\n", "op, rows x width", "LibTorch ms", "lofi ms", "lofi unfused ms", "ratio", "target");
  for (const Row& row : {Row{"add + RMSNorm", &rms_libtorch, &rms_fused, &rms_unfused}, Row{"add + LayerNorm", &ln_libtorch, &ln_fused, nullptr}})
    for (const auto& [rows, width] : {std::pair<int64_t, int64_t>{2048, 512}, {8192, 512}, {2048, 2048}}) {
      const int iters = static_cast<int>(std::max<int64_t>(10, 200 * 2048 * 512 / (rows * width)));
      const double t_libtorch = time_ms(*row.libtorch, rows, width, iters), t_fused = time_ms(*row.fused, rows, width, iters);
      const double t_unfused = row.unfused != nullptr ? time_ms(*row.unfused, rows, width, iters) : 0.0;
      char shape[64];
      std::snprintf(shape, sizeof shape, "%s, %ld x %ld", row.name, static_cast<long>(rows), static_cast<long>(width));
      char unfused[32] = "-";
      if (row.unfused != nullptr) std::snprintf(unfused, sizeof unfused, "%.3f", t_unfused);
      std::printf("%-26s %12.3f %10.3f %16s %8.2fx %10s %s\n", shape, t_libtorch, t_fused, unfused, t_libtorch / t_fused, ">= 1.00x",
                  t_libtorch / t_fused >= 1.0 ? "met" : "MISSED");
    }
  std::printf("ratio: LibTorch's add and norm / lofi's fused op; lofi unfused: the add, then lofi's RMSNorm\n");
}
