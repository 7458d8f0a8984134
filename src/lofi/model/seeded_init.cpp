#include "lofi/model/seeded_init.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "lofi/error.h"
#include "lofi/seed.h"

namespace lofi::model {

void seeded_normal_(const torch::Tensor& t, double mean, double std, uint64_t seed) {
  if (!t.device().is_cpu() || !t.is_contiguous() || !t.is_floating_point())
    fail("internal: seeded_normal_ takes a contiguous floating-point host tensor, found ", t.sizes(), " ", t.dtype(), " on ",
         t.device());
  // Detached: the draws write a parameter's memory from worker threads, whatever their grad mode.
  const torch::Tensor flat = t.detach().view({-1});  // (numel,)
  const int64_t n = flat.numel(), blocks = (n + kSeededInitBlock - 1) / kSeededInitBlock;
  at::parallel_for(0, blocks, /*grain_size=*/1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      at::Generator generator = at::detail::createCPUGenerator(mix_seed(seed, static_cast<uint64_t>(b)));
      const int64_t first = b * kSeededInitBlock;
      flat.narrow(0, first, std::min(kSeededInitBlock, n - first)).normal_(mean, std, generator);
    }
  });
}

}  // namespace lofi::model
