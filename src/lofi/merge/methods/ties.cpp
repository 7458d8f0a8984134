// ties: TIES-merging (Yadav et al. 2023, "Resolving interference when merging models"), as
// mergekit's `ties` computes it: each input's difference from the base keeps its top --density
// fraction by magnitude (per tensor), is weighted, and each element takes the sign of the weighted
// sum; the differences that agree with it are averaged (divided by the sum of their weights),
// scaled by --lambda and added to the base.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "lofi/error.h"
#include "lofi/merge/method.h"

namespace lofi::merge {
namespace {

// Which of an input's differences survive the trim: those above THRESHOLD (the k-th largest
// magnitude) and, of those equal to it, the first TIES by index, so exactly k survive
// (mergekit's sort breaks such ties arbitrarily).
template <typename T>
struct Trim {
  T threshold = 0;
  int64_t ties = 0;
};

// The trim keeping the K largest of |X - BASE|, found by selection (O(n)) in SCRATCH: a sort, as
// mergekit does, takes minutes on an embedding.
template <typename T>
Trim<T> trim_for(const T* x, const T* base, int64_t n, int64_t k, T* scratch) {
  for (int64_t j = 0; j < n; ++j) scratch[j] = std::abs(static_cast<T>(x[j] - base[j]));
  std::nth_element(scratch, scratch + (n - k), scratch + n);  // ascending: [n - k] is the k-th largest
  Trim<T> trim{scratch[n - k], 0};
  int64_t above = 0;
  for (int64_t j = n - k + 1; j < n; ++j) above += scratch[j] > trim.threshold;
  trim.ties = k - above;
  return trim;
}

// The same for float by radix selection on the magnitudes' bits (non-negative floats order as
// their bit patterns): a histogram of the high 16 bits finds the bucket holding the k-th largest,
// one of that bucket's low 16 bits finds it within; two passes, five times faster than nth_element.
template <>
Trim<float> trim_for(const float* x, const float* base, int64_t n, int64_t k, float* scratch) {
  std::vector<int64_t> count(1 << 16, 0);
  auto* bits = reinterpret_cast<uint32_t*>(scratch);
  for (int64_t j = 0; j < n; ++j) {
    const float magnitude = std::abs(static_cast<float>(x[j] - base[j]));
    std::memcpy(&bits[j], &magnitude, sizeof(float));
    ++count[bits[j] >> 16];
  }
  // From the top, the bucket where the count of larger magnitudes reaches k; ABOVE: those before it.
  auto find = [&](int64_t need, int64_t& above) {
    int64_t bucket = (1 << 16) - 1;
    above = 0;
    while (above + count[bucket] < need) above += count[bucket--];
    return static_cast<uint32_t>(bucket);
  };
  int64_t above_high = 0, above_low = 0;
  const uint32_t high = find(k, above_high);
  std::fill(count.begin(), count.end(), 0);
  for (int64_t j = 0; j < n; ++j)
    if ((bits[j] >> 16) == high) ++count[bits[j] & 0xFFFF];
  const uint32_t low = find(k - above_high, above_low);
  const uint32_t threshold_bits = high << 16 | low;
  Trim<float> trim;
  std::memcpy(&trim.threshold, &threshold_bits, sizeof(float));
  trim.ties = k - above_high - above_low;
  return trim;
}

// The merge itself, by hand: as LibTorch ops it is a dozen passes and as many full-size
// temporaries per input. Elements go in blocks that stay in cache, each step a branch-free loop
// the compiler vectorises (whether a difference survives, and whether it agrees with the elected
// sign, are as good as random: branches on them would mispredict half the time). Differences are
// taken in T, as mergekit takes them, so the trim sees the values it selected on; sums are in double.
template <typename T>
void ties_pass(const std::vector<const T*>& x, const T* base, const std::vector<double>& w, std::vector<Trim<T>> trims,
               bool trim, double lambda, int64_t n, T* out) {
  constexpr int64_t kBlock = 2048;
  const size_t m = x.size();
  std::vector<double> weighted(m * kBlock), sum(kBlock), mixed(kBlock), divisor(kBlock);
  for (int64_t at = 0; at < n; at += kBlock) {
    const int64_t len = std::min(kBlock, n - at);
    const T* b = base + at;
    std::fill(sum.begin(), sum.begin() + len, 0.0);
    for (size_t i = 0; i < m; ++i) {
      const T* xi = x[i] + at;
      double* wd = weighted.data() + i * kBlock;
      const T threshold = trim ? trims[i].threshold : T(-1);
      const double wi = w[i];
      for (int64_t j = 0; j < len; ++j) {
        const T d = static_cast<T>(xi[j] - b[j]);
        wd[j] = static_cast<double>(std::abs(d) > threshold) * (wi * static_cast<double>(d));
      }
      if (trim && trims[i].ties > 0)  // the first differences equal to the threshold survive too
        for (int64_t j = 0; j < len && trims[i].ties > 0; ++j) {
          const T d = static_cast<T>(xi[j] - b[j]);
          if (std::abs(d) == threshold) wd[j] = wi * static_cast<double>(d), --trims[i].ties;
        }
      for (int64_t j = 0; j < len; ++j) sum[j] += wd[j];
    }
    std::fill(mixed.begin(), mixed.begin() + len, 0.0);
    std::fill(divisor.begin(), divisor.begin() + len, 0.0);
    for (size_t i = 0; i < m; ++i) {
      const double* wd = weighted.data() + i * kBlock;
      const double wi = w[i];
      for (int64_t j = 0; j < len; ++j) {
        // Agrees: nonzero and of the elected sign (+ when the sum is >= 0).
        const bool up = sum[j] >= 0;
        const double agree = static_cast<double>((up & (wd[j] > 0)) | (!up & (wd[j] < 0)));
        mixed[j] += agree * wd[j];
        divisor[j] += agree * wi;
      }
    }
    for (int64_t j = 0; j < len; ++j)
      out[at + j] = static_cast<T>(static_cast<double>(b[j]) + lambda * (mixed[j] / (divisor[j] + static_cast<double>(divisor[j] == 0))));
  }
}

class Ties : public Method {
 public:
  bool needs_base() const override { return true; }
  bool whole_tensors() const override { return true; }
  std::string summary() const override {
    return "TIES: trim each difference from the base to its top --density, elect signs, mean of the agreeing";
  }
  void check(size_t, const MethodParams& p) const override {
    if (!(p.density > 0 && p.density <= 1)) fail("--density must be in (0, 1] (the fraction of each difference kept), found ", p.density);
  }
  nlohmann::json describe(const MethodParams& p) const override { return {{"density", p.density}, {"lambda", p.lambda}}; }

  torch::Tensor merge(Piece piece, const MethodParams& p) const override {
    const torch::Dtype dtype = compute_dtype(piece.inputs[0].scalar_type());
    return dtype == torch::kFloat64 ? run<double>(piece, p) : run<float>(piece, p);
  }

 private:
  template <typename T>
  static torch::Tensor run(const Piece& piece, const MethodParams& p) {
    const torch::Dtype dtype = c10::CppTypeToScalarType<T>::value;
    const int64_t n = piece.base.numel();
    std::vector<torch::Tensor> held;  // the inputs in T (a copy only for half precision)
    for (const auto& x : piece.inputs) held.push_back(x.to(dtype).contiguous());
    const torch::Tensor base = piece.base.to(dtype).contiguous();
    std::vector<const T*> x;
    for (const auto& h : held) x.push_back(h.data_ptr<T>());
    const bool trim = p.density < 1.0 && n > 0;
    std::vector<Trim<T>> trims(x.size());
    if (trim) {
      const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(p.density * static_cast<double>(n)));
      thread_local std::vector<torch::Tensor> buffers;
      torch::Tensor scratch = reused_buffer(buffers, 0, n, dtype);
      for (size_t i = 0; i < x.size(); ++i) trims[i] = trim_for(x[i], base.data_ptr<T>(), n, k, scratch.data_ptr<T>());
    }
    thread_local std::vector<torch::Tensor> out_buffers;
    torch::Tensor out = reused_buffer(out_buffers, 0, n, dtype);
    ties_pass(x, base.data_ptr<T>(), piece.weights, trims, trim, p.lambda, n, out.data_ptr<T>());
    return out;
  }
};

}  // namespace
}  // namespace lofi::merge

LOFI_MERGE_METHOD(ties, "ties", Ties)
