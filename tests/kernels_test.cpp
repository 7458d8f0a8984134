// Fused ops (src/lofi/kernels/) against the plain composite LibTorch ops they replace: losses and
// gradients to 1e-5 in fp32 on CPU, the same under bf16 autocast, and on a GPU (Cuda*, skipped
// where none is visible) the memory they exist to save.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <tuple>

#include "lofi/dist/device.h"
#include "lofi/kernels/autocast_operand.h"
#include "lofi/kernels/cross_entropy.h"
#include "lofi/kernels/fp32_products.h"
#include "lofi/kernels/layer_norm.h"
#include "lofi/kernels/linear_relu.h"
#include "lofi/kernels/rotary.h"
#include "lofi/kernels/rms_norm.h"
#include "lofi/kernels/swiglu.h"
#include "lofi/kernels/upcast_linear.h"
#include "lofi/model/blocks.h"
#include "cpu_bytes.h"
#include "test_util.h"

namespace lofi {
namespace {

struct Grads {
  torch::Tensor loss, h, w;
};

// Loss and gradients of LOSS_FN(h, w, targets) scaled by SCALE, with W also used elsewhere (a tied
// embedding: its gradient must add to the other use's).
template <typename F>
Grads loss_and_grads(F loss_fn, const torch::Tensor& h0, const torch::Tensor& w0, const torch::Tensor& targets, double scale) {
  torch::Tensor h = h0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
  torch::Tensor loss = loss_fn(h, w, targets);
  (loss * scale + w.sum() * 0.25).backward();
  return {loss.detach(), h.grad(), w.grad()};
}

double largest(const torch::Tensor& t) { return t.abs().max().item<double>(); }
double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a.to(torch::kFloat) - b.to(torch::kFloat)).abs().max().item<double>(); }

auto chunked(int64_t chunk, int64_t group = 0) {
  return [chunk, group](const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& t) {
    return kernels::linear_cross_entropy(h, w, t, chunk, group);
  };
}
auto reference = [](const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& t) {
  return kernels::linear_cross_entropy_reference(h, w, t);
};

// at::parallel_for in code built with the project's flags (the library's CPU loops: rotary, the
// seeded init) runs on several threads: its OpenMP region is a header template, serial in code
// compiled without -fopenmp.
TEST(Parallel, ParallelForInLofisCodeUsesSeveralThreads) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  std::atomic<int> most{0};
  at::parallel_for(0, 64, /*grain_size=*/1, [&](int64_t, int64_t) {
    const int me = at::get_thread_num();
    int seen = most.load();
    while (me > seen && !most.compare_exchange_weak(seen, me)) {
    }
  });
  at::set_num_threads(threads);
  EXPECT_GE(most.load(), 1) << "at::parallel_for ran on one thread: is lofi compiled with -fopenmp?";
}

TEST(LinearCrossEntropy, EqualsTheFullLogitsInFp32) {
  torch::manual_seed(0);
  // (tokens, width, vocab, chunk, group): one chunk, chunks that divide the tokens and that do
  // not, one token per chunk, groups of several chunks (the last one short), the defaults.
  for (auto [N, E, V, chunk, group] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{12, 16, 50, 64, 0}, {12, 16, 50, 4, 4}, {13, 8, 97, 5, 5},
        {7, 32, 33, 1, 1}, {13, 8, 97, 2, 6}, {40, 24, 300, 3, 9}, {40, 24, 300, 0, 0}}) {
    torch::Tensor h = torch::randn({N, E}), w = torch::randn({V, E}) * 0.3;
    torch::Tensor targets = torch::randint(V, {N}, torch::kLong);
    targets[N / 2] = kernels::kIgnoreIndex;  // left out of the loss and of the mean
    const Grads want = loss_and_grads(reference, h, w, targets, 0.5);
    const Grads got = loss_and_grads(chunked(chunk, group), h, w, targets, 0.5);
    const std::string at = "N=" + std::to_string(N) + " V=" + std::to_string(V) + " chunk=" + std::to_string(chunk) +
                           " group=" + std::to_string(group);
    EXPECT_LE(max_diff(got.loss, want.loss), 1e-5) << at;
    EXPECT_LE(max_diff(got.h, want.h), 1e-5) << at;
    EXPECT_LE(max_diff(got.w, want.w), 1e-5) << at;
    EXPECT_EQ(got.loss.dim(), 0);
    EXPECT_EQ(got.h.scalar_type(), torch::kFloat);
  }
}

// Gemma 2's final soft cap: the loss of cap * tanh(logits / cap) and its gradients through the
// cap, chunked as above, against the capped full logits; the cap bends these logits (they reach
// past it), so the capped loss is not the plain one.
void expect_softcapped_cross_entropy_matches(const torch::Device& device) {
  torch::manual_seed(3);
  const double cap = 2.0;
  for (auto [N, E, V, chunk, group] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{12, 16, 50, 64, 0}, {13, 8, 97, 5, 5},
                                       {40, 24, 300, 3, 9}, {40, 24, 300, 0, 0}}) {
    torch::Tensor h = torch::randn({N, E}).to(device), w = (torch::randn({V, E}) * 0.5).to(device);
    torch::Tensor targets = torch::randint(V, {N}, torch::kLong).to(device);
    targets[N / 2] = kernels::kIgnoreIndex;
    ASSERT_GT(largest(torch::linear(h, w)), cap);
    auto capped_reference = [cap](const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& t) {
      return kernels::linear_cross_entropy_reference(h, w, t, cap);
    };
    auto capped_chunks = [cap, chunk, group](const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& t) {
      return kernels::linear_cross_entropy(h, w, t, chunk, group, cap);
    };
    const Grads want = loss_and_grads(capped_reference, h, w, targets, 0.5);
    const Grads got = loss_and_grads(capped_chunks, h, w, targets, 0.5);
    const std::string at = "N=" + std::to_string(N) + " chunk=" + std::to_string(chunk) + " group=" + std::to_string(group);
    EXPECT_LE(max_diff(got.loss, want.loss), 1e-5) << at;
    EXPECT_LE(max_diff(got.h, want.h), 1e-5) << at;
    EXPECT_LE(max_diff(got.w, want.w), 1e-5) << at;
    EXPECT_GT(max_diff(got.loss, kernels::linear_cross_entropy_reference(h, w, targets)), 1e-2) << at;
  }
  // The reference itself is the composite of PyTorch's ops.
  torch::Tensor h = torch::randn({5, 4}).to(device), w = torch::randn({7, 4}).to(device);
  torch::Tensor t = torch::randint(7, {5}, torch::kLong).to(device);
  EXPECT_LE(max_diff(kernels::linear_cross_entropy_reference(h, w, t, cap),
                     torch::nn::functional::cross_entropy(torch::tanh(torch::mm(h, w.t()) / cap) * cap, t)),
            1e-6);
  EXPECT_THROW(kernels::linear_cross_entropy(h, w, t, 0, 0, -1.0), std::exception);
}

TEST(LinearCrossEntropy, SoftCappedEqualsTheCappedFullLogitsInFp32) { expect_softcapped_cross_entropy_matches(torch::kCPU); }

// Changing an ignored token's target changes nothing; changing a kept one does.
TEST(LinearCrossEntropy, IgnoredTargetsAreLeftOut) {
  torch::manual_seed(1);
  torch::Tensor h = torch::randn({6, 8}), w = torch::randn({11, 8});
  torch::Tensor t = torch::randint(11, {6}, torch::kLong);
  t[2] = kernels::kIgnoreIndex;
  const Grads a = loss_and_grads(chunked(4), h, w, t, 1.0);
  torch::Tensor kept_only = kernels::linear_cross_entropy_reference(
      torch::cat({h.narrow(0, 0, 2), h.narrow(0, 3, 3)}), w, torch::cat({t.narrow(0, 0, 2), t.narrow(0, 3, 3)}));
  EXPECT_LE(max_diff(a.loss, kept_only), 1e-6);
  EXPECT_LE(a.h[2].abs().max().item<double>(), 0.0);  // no gradient reaches an ignored token
  torch::Tensor t2 = t.clone();
  t2[3] = (t[3].item<int64_t>() + 1) % 11;
  EXPECT_GT(max_diff(loss_and_grads(chunked(4), h, w, t2, 1.0).loss, a.loss), 1e-4);
}

// Every target ignored: 0 and no gradient (PyTorch's mean over no tokens is NaN). A non-finite
// logit on an ignored row stays out of the loss.
TEST(LinearCrossEntropy, AllIgnoredIsZeroAndIgnoredRowsStayOut) {
  torch::manual_seed(6);
  torch::Tensor h = torch::randn({5, 8}), w = torch::randn({11, 8});
  const Grads none = loss_and_grads(chunked(2), h, w, torch::full({5}, kernels::kIgnoreIndex, torch::kLong), 1.0);
  EXPECT_EQ(none.loss.item<double>(), 0.0);
  EXPECT_EQ(none.h.abs().max().item<double>(), 0.0);
  torch::Tensor t = torch::randint(11, {5}, torch::kLong);
  t[1] = kernels::kIgnoreIndex;
  torch::Tensor bad = h.clone();
  bad[1].fill_(std::numeric_limits<float>::infinity());
  torch::NoGradGuard no_grad;
  const torch::Tensor loss = kernels::linear_cross_entropy(bad, w, t, 2);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  EXPECT_LE(max_diff(loss, kernels::linear_cross_entropy_reference(h, w, t)), 1e-6);
}

// A second backward through the same graph is refused, not silently scaled twice.
TEST(LinearCrossEntropy, SecondBackwardIsRefused) {
  torch::Tensor h = torch::randn({4, 8}, torch::requires_grad()), w = torch::randn({10, 8}, torch::requires_grad());
  torch::Tensor loss = kernels::linear_cross_entropy(h, w, torch::randint(10, {4}, torch::kLong), 2);
  loss.backward({}, /*retain_graph=*/true);
  EXPECT_THROW(loss.backward(), std::exception);
}

// Without gradients (evaluation) only the loss is computed, and it is the same.
TEST(LinearCrossEntropy, NoGradGivesTheSameLoss) {
  torch::manual_seed(2);
  torch::Tensor h = torch::randn({9, 8}), w = torch::randn({20, 8}), t = torch::randint(20, {9}, torch::kLong);
  torch::NoGradGuard no_grad;
  EXPECT_LE(max_diff(kernels::linear_cross_entropy(h, w, t, 2), kernels::linear_cross_entropy_reference(h, w, t)), 1e-6);
}

// Under bf16 autocast the head's matmuls run in bf16 and the softmax in fp32, as autocast runs
// linear + cross_entropy: the same numbers up to the order of bf16 products.
TEST(LinearCrossEntropy, FollowsBf16AutocastLikeTheComposite) {
  torch::manual_seed(3);
  torch::Tensor h = torch::randn({32, 64}), w = torch::randn({500, 64}) * 0.1, t = torch::randint(500, {32}, torch::kLong);
  auto under_autocast = [&](auto fn) {
    dist::PrecisionGuard bf16(torch::kCPU, "bf16");
    return loss_and_grads(fn, h, w, t, 1.0);
  };
  const Grads want = under_autocast(reference), got = under_autocast(chunked(8, 16));
  const Grads fp32 = loss_and_grads(reference, h, w, t, 1.0);
  EXPECT_GT(max_diff(want.loss, fp32.loss), 1e-5);  // autocast did act on the reference
  // ... and on the kernel: its matmuls ran in bf16, so it is as far from fp32 as the reference.
  EXPECT_GT(max_diff(got.loss, fp32.loss), 0.5 * max_diff(want.loss, fp32.loss));
  EXPECT_LE(max_diff(got.loss, want.loss), 1e-4);
  EXPECT_LE(max_diff(got.h, want.h), 2e-3 * want.h.abs().max().item<double>());
  EXPECT_LE(max_diff(got.w, want.w), 2e-3 * want.w.abs().max().item<double>());
}

TEST(LinearCrossEntropy, RefusesMismatchedShapes) {
  EXPECT_THROW(kernels::linear_cross_entropy(torch::randn({4, 8}), torch::randn({10, 6}), torch::zeros({4}, torch::kLong)),
               std::exception);
}

// RMSNorm as the models run it (kernels/rms_norm.h: lofi's fused loop on a CPU with AVX2,
// LibTorch's rms_norm elsewhere) against transformers' composite, forward and backward, on DEVICE.
void expect_rms_norm_matches(const torch::Device& device) {
  torch::manual_seed(5);
  // Widths of whole registers and with a tail; 3 x 47 rows: more than one chunk of rows, the last
  // one short.
  for (int64_t width : {64, 67}) {
    const std::string what = "width " + std::to_string(width);
    // A large epsilon, so leaving it out anywhere shows.
    model::RmsNorm norm(width, 0.5);
    norm->to(device);
    {
      torch::NoGradGuard no_grad;
      norm->weight.uniform_(0.5, 1.5);
    }
    // Rows of different scales (rstd from about 0.25 to 2), so each power of rstd shows.
    torch::Tensor x0 = torch::randn({3, 47, width}, device) * torch::rand({3, 47, 1}, device).mul(4).add(0.2);
    torch::Tensor x = x0.clone().requires_grad_(true), xr = x0.clone().requires_grad_(true);
    torch::Tensor up = torch::randn({3, 47, width}, device);
    torch::Tensor y = norm(x);
    (y * up).sum().backward();
    const torch::Tensor gw = norm->weight.grad().clone();
    norm->weight.mutable_grad().reset();
    torch::Tensor yr = model::rms_norm_reference(xr, norm->weight, 0.5);
    (yr * up).sum().backward();
    EXPECT_LE(max_diff(y, yr), 1e-5) << what;
    EXPECT_LE(max_diff(x.grad(), xr.grad()), 1e-5) << what;
    EXPECT_LE(max_diff(gw, norm->weight.grad()), 1e-4 * gw.abs().max().item<double>()) << what;
    // A frozen scale (a LoRA base): the input's gradient alone, the same.
    norm->weight.requires_grad_(false);
    torch::Tensor xf = x0.clone().requires_grad_(true);
    (norm(xf) * up).sum().backward();
    EXPECT_LE(max_diff(xf.grad(), xr.grad()), 1e-5) << what << ", frozen scale";
    // A constant input (the first norm after a frozen embedding): the scale's gradient alone.
    norm->weight.requires_grad_(true);
    norm->weight.mutable_grad().reset();
    (norm(x0) * up).sum().backward();
    EXPECT_LE(max_diff(gw, norm->weight.grad()), 1e-4 * gw.abs().max().item<double>()) << what << ", constant input";
  }
  const std::string e = test::error_of([&] { kernels::rms_norm(torch::randn({2, 3}, device), torch::ones({4}, device), 1e-6); });
  EXPECT_NE(e.find("rms_norm: expected fp32 x (..., C) and weight (C)"), std::string::npos) << e;
}

TEST(FusedRmsNorm, EqualsTheComposite) { expect_rms_norm_matches(torch::kCPU); }

// A residual add and a norm of its result fused (FUSED(x, r, w, b) -> {sum, norm}: one pass each way
// on a CPU with AVX2 and on a GPU) against the add and the plain norm (REFERENCE(sum, w, b)),
// forward and backward, on DEVICE: with the sum and the norm each used or not (the backward adds
// the sum's own gradient to the norm's, or passes either alone), a residual in fp32 and in bf16 (a
// block's output under autocast), a trained and a frozen scale (and bias, where BIAS).
template <typename Fused, typename Reference>
void expect_add_norm_matches(const torch::Device& device, Fused fused_fn, Reference reference_fn, bool bias) {
  torch::manual_seed(6);
  for (int64_t width : {64, 67})
    for (c10::ScalarType rt : {torch::kFloat, torch::kBFloat16})
      for (bool frozen : {false, true}) {
        // Rows of different scales and offsets (rstd from about 0.25 to 2), so each power of rstd
        // and the mean show.
        const torch::Tensor x0 = torch::randn({3, 47, width}, device) * torch::rand({3, 47, 1}, device).mul(4).add(0.2) +
                                 torch::randn({3, 47, 1}, device);
        const torch::Tensor r0 = torch::randn({3, 47, width}, device).to(rt), w0 = torch::rand({width}, device).add(0.5);
        const torch::Tensor b0 = bias ? torch::randn({width}, device) : torch::Tensor();
        const torch::Tensor up_sum = torch::randn({3, 47, width}, device), up_norm = torch::randn({3, 47, width}, device);
        for (const auto& [use_sum, use_norm] : {std::pair{true, true}, std::pair{false, true}, std::pair{true, false}}) {
          const std::string what = "width " + std::to_string(width) + ", residual " + c10::toString(rt) +
                                   (frozen ? ", frozen scale" : "") + (use_sum ? ", sum used" : "") + (use_norm ? ", norm used" : "");
          struct Out {
            torch::Tensor sum, norm, dx, dr, dw, db;
          };
          auto run = [&](bool fused) {
            torch::Tensor x = x0.clone().requires_grad_(true), r = r0.clone().requires_grad_(true);
            torch::Tensor w = w0.clone().requires_grad_(!frozen), b = bias ? b0.clone().requires_grad_(!frozen) : b0;
            torch::Tensor sum, norm;
            if (fused) {
              std::tie(sum, norm) = fused_fn(x, r, w, b);
            } else {
              sum = x + r;
              norm = reference_fn(sum, w, b);
            }
            torch::Tensor loss = torch::zeros({}, device);
            if (use_sum) loss = loss + (sum * up_sum).sum();
            if (use_norm) loss = loss + (norm * up_norm).sum();
            loss.backward();
            return Out{sum.detach(), norm.detach(), x.grad(), r.grad(), w.grad(), bias ? b.grad() : torch::Tensor()};
          };
          const Out got = run(true), want = run(false);
          ASSERT_EQ(got.sum.scalar_type(), torch::kFloat) << what;
          EXPECT_TRUE(torch::equal(got.sum, want.sum)) << what;  // the same fp32 add
          EXPECT_LE(max_diff(got.norm, want.norm), 1e-5) << what;
          EXPECT_LE(max_diff(got.dx, want.dx), 1e-5) << what << ": the stream's gradient";
          ASSERT_EQ(got.dr.scalar_type(), rt) << what;
          // The residual's: the same sum, rounded once more to bf16 where it is bf16.
          EXPECT_LE(max_diff(got.dr, want.dr), rt == torch::kFloat ? 1e-5 : 1e-2 * largest(want.dr))
              << what << ": the residual's gradient";
          for (const auto& [g, wanted, name] : {std::tuple{got.dw, want.dw, "scale"}, std::tuple{got.db, want.db, "bias"}}) {
            ASSERT_EQ(g.defined(), wanted.defined()) << what << ": the " << name << "'s gradient";
            if (wanted.defined()) EXPECT_LE(max_diff(g, wanted), 1e-4 * largest(wanted)) << what << ", " << name;
          }
        }
      }
}

// RMSNorm: kernels::add_rms_norm against the add and transformers' composite.
void expect_add_rms_norm_matches(const torch::Device& device) {
  expect_add_norm_matches(
      device,
      [](const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w, const torch::Tensor&) {
        return kernels::add_rms_norm(x, r, w, 0.5);  // a large epsilon, so leaving it out shows
      },
      [](const torch::Tensor& sum, const torch::Tensor& w, const torch::Tensor&) { return model::rms_norm_reference(sum, w, 0.5); },
      /*bias=*/false);
  const std::string e = test::error_of([&] {
    kernels::add_rms_norm(torch::randn({2, 4}, device), torch::randn({2, 3}, device), torch::ones({4}, device), 1e-6);
  });
  EXPECT_NE(e.find("add_rms_norm: expected fp32 x (..., C), a residual of x's shape"), std::string::npos) << e;
}

// LayerNorm: kernels::add_layer_norm against the add and LibTorch's layer_norm.
void expect_add_layer_norm_matches(const torch::Device& device) {
  expect_add_norm_matches(
      device,
      [](const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w, const torch::Tensor& b) {
        return kernels::add_layer_norm(x, r, w, b, 0.5);
      },
      [](const torch::Tensor& sum, const torch::Tensor& w, const torch::Tensor& b) {
        return torch::layer_norm(sum, {w.size(0)}, w, b, 0.5);
      },
      /*bias=*/true);
  const std::string e = test::error_of([&] {
    kernels::add_layer_norm(torch::randn({2, 4}, device), torch::randn({2, 4}, device), torch::ones({4}, device), torch::Tensor(), 1e-6);
  });
  EXPECT_NE(e.find("add_layer_norm: expected fp32 x (..., C), a residual of x's shape"), std::string::npos) << e;
}

TEST(FusedAddRmsNorm, EqualsTheComposite) { expect_add_rms_norm_matches(torch::kCPU); }
TEST(FusedAddLayerNorm, EqualsTheComposite) { expect_add_layer_norm_matches(torch::kCPU); }

// RMSNorm of a bf16 or fp16 stream (kernels::rms_norm_low_precision) against transformers'
// composite, outputs and gradients to one rounding in their dtypes, on DEVICE.
void expect_low_precision_rms_norm_matches(const torch::Device& device) {
  torch::manual_seed(13);
  using T = std::pair<c10::ScalarType, c10::ScalarType>;  // x's dtype, the scale's
  for (const auto& [xt, wt] : {T{torch::kBFloat16, torch::kBFloat16}, T{torch::kBFloat16, torch::kFloat}, T{torch::kHalf, torch::kHalf}}) {
    const std::string what = std::string("x ") + c10::toString(xt) + ", scale " + c10::toString(wt);
    // Rows of different scales (rstd from about 0.25 to 2), so each power of rstd shows.
    const torch::Tensor scale = torch::rand({3, 47, 1}, device).mul(4).add(0.2);
    const torch::Tensor x0 = (torch::randn({3, 47, 67}, device) * scale).to(xt), w0 = torch::rand({67}, device).add(0.5).to(wt);
    torch::Tensor x = x0.clone().requires_grad_(true), xr = x0.clone().requires_grad_(true);
    torch::Tensor w = w0.clone().requires_grad_(true), wr = w0.clone().requires_grad_(true);
    const torch::Tensor y = kernels::rms_norm_low_precision(x, w, 0.5), yr = model::rms_norm_reference(xr, wr, 0.5);
    ASSERT_EQ(y.scalar_type(), yr.scalar_type()) << what;
    EXPECT_TRUE(torch::equal(y, yr)) << what;  // the same ops forward
    const torch::Tensor up = torch::randn(y.sizes(), device);
    (y.to(torch::kFloat) * up).sum().backward();
    (yr.to(torch::kFloat) * up).sum().backward();
    auto tol = [](const torch::Tensor& want) {  // one rounding in its dtype
      return (want.scalar_type() == torch::kFloat ? 1e-5 : 1e-2) * want.abs().max().item<double>();
    };
    ASSERT_EQ(x.grad().scalar_type(), xt) << what;
    ASSERT_EQ(w.grad().scalar_type(), wt) << what;
    EXPECT_LE(max_diff(x.grad(), xr.grad()), tol(xr.grad())) << what << ": the input's gradient";
    EXPECT_LE(max_diff(w.grad(), wr.grad()), tol(wr.grad())) << what << ": the scale's gradient";
    // A frozen scale (a bf16 base): the input's gradient alone, the same.
    torch::Tensor xf = x0.clone().requires_grad_(true);
    (kernels::rms_norm_low_precision(xf, w0, 0.5).to(torch::kFloat) * up).sum().backward();
    EXPECT_LE(max_diff(xf.grad(), xr.grad()), tol(xr.grad())) << what << ", frozen scale";
  }
  const std::string e = test::error_of([&] { kernels::rms_norm_low_precision(torch::randn({2, 4}, device), torch::ones({4}, device), 1e-6); });
  EXPECT_NE(e.find("rms_norm_low_precision: expected bf16 or fp16 x (..., C)"), std::string::npos) << e;
}

TEST(LowPrecisionRmsNorm, EqualsTheComposite) { expect_low_precision_rms_norm_matches(torch::kCPU); }

// What a bf16 norm's forward leaves for its backward beyond its output: one fp32 number a row, not
// the fp32 copy of the input that autograd over the composite keeps (counted by tests/cpu_bytes.h).
TEST(LowPrecisionRmsNorm, KeepsNoFp32CopyOfItsInput) {
  model::RmsNorm norm(256, 1e-5);
  norm->to(torch::kBFloat16);
  const torch::Tensor x = torch::randn({4, 64, 256}).to(torch::kBFloat16).requires_grad_(true);
  torch::Tensor y;
  int64_t held = 0;
  {
    test::CpuBytes bytes;
    y = norm(x);
    held = bytes.live() - static_cast<int64_t>(y.nbytes());
  }
  EXPECT_LE(held, 4 * 64 * 4) << "bytes kept for backward";  // rstd: (4, 64, 1) fp32
  y.to(torch::kFloat).sum().backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(norm->weight.grad().defined());
}

TEST(CudaKernels, LowPrecisionRmsNormEqualsTheComposite) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_low_precision_rms_norm_matches(torch::Device(torch::kCUDA, 0));
}

TEST(CudaKernels, FusedRmsNormEqualsTheComposite) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_rms_norm_matches(torch::Device(torch::kCUDA, 0));
}

TEST(CudaKernels, FusedAddRmsNormEqualsTheComposite) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_add_rms_norm_matches(torch::Device(torch::kCUDA, 0));
}

TEST(CudaKernels, FusedAddLayerNormEqualsTheComposite) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_add_layer_norm_matches(torch::Device(torch::kCUDA, 0));
}

// On a GPU: the same numbers, and a peak of allocated memory far below the full logits' (the
// reason the kernel exists).
TEST(CudaKernels, SoftCappedCrossEntropyEqualsTheCappedFullLogits) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_softcapped_cross_entropy_matches(torch::Device(torch::kCUDA, 0));
}

TEST(CudaKernels, LinearCrossEntropyMatchesAndSavesMemory) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  torch::manual_seed(4);
  const torch::Device gpu(torch::kCUDA, 0);
  const int64_t N = 4096, E = 256, V = 32000;
  torch::Tensor h = torch::randn({N, E}, gpu), w = torch::randn({V, E}, gpu) * 0.05;
  torch::Tensor t = torch::randint(V, {N}, torch::TensorOptions(torch::kLong).device(gpu));
  auto peak_of = [&](auto fn) {
    torch::cuda::synchronize();
    dist::cuda_reset_peak(0);
    const int64_t before = dist::cuda_peak_allocated(0);
    Grads g = loss_and_grads(fn, h, w, t, 1.0);
    torch::cuda::synchronize();
    return std::pair{g, dist::cuda_peak_allocated(0) - before};
  };
  const auto [want, want_peak] = peak_of(reference);
  const auto [got, got_peak] = peak_of(chunked(512, 1024));
  EXPECT_LE(max_diff(got.loss, want.loss), 1e-5);
  EXPECT_LE(max_diff(got.h, want.h), 1e-5);
  EXPECT_LE(max_diff(got.w, want.w), 1e-5);
  {  // under bf16 autocast too, as the training step runs it
    dist::PrecisionGuard bf16(gpu, "bf16");
    const Grads want16 = loss_and_grads(reference, h, w, t, 1.0), got16 = loss_and_grads(chunked(512, 1024), h, w, t, 1.0);
    EXPECT_LE(max_diff(got16.loss, want16.loss), 1e-3);
    // bf16's unit roundoff is 2^-8 = 3.9e-3: one rounding of the gradient logits apart (seen on an
    // H200: 2.4e-7 against a largest gradient of 6.1e-5).
    EXPECT_LE(max_diff(got16.h, want16.h), 1e-2 * want16.h.abs().max().item<double>());
    EXPECT_LE(max_diff(got16.w, want16.w), 1e-2 * want16.w.abs().max().item<double>());
  }
  // The composite holds the whole (N, V) fp32 logits (and their gradient); the chunked kernel never
  // does: its peak, the test's own inputs and gradients included, stays below one such tensor
  // (seen on an H200: 337 MB against the composite's 1,644 MB).
  const int64_t logits_bytes = N * V * 4;  // 524 MB of fp32 logits
  EXPECT_GT(want_peak, logits_bytes);
  EXPECT_LT(got_peak, logits_bytes) << "chunked peak " << got_peak << " B against the composite's " << want_peak << " B";
}


// Output and gradient of F(x...) against REF(x...), through a random weighting of the output.
// fp32: to 1e-5; bf16 (one rounding of an fp32 result apart): to 1% of the largest value.
template <typename F, typename R>
void expect_same_with_grads(F fused, R ref, std::vector<torch::Tensor> inputs, const std::string& what) {
  std::vector<torch::Tensor> a, b;
  for (const auto& t : inputs) a.push_back(t.detach().clone().requires_grad_(true)), b.push_back(t.detach().clone().requires_grad_(true));
  const torch::Tensor y = fused(a), yr = ref(b);
  ASSERT_EQ(y.sizes(), yr.sizes()) << what;
  ASSERT_EQ(y.scalar_type(), yr.scalar_type()) << what;
  const bool fp32 = y.scalar_type() == torch::kFloat;
  auto tol = [&](const torch::Tensor& want) { return fp32 ? 1e-5 : 1e-2 * want.abs().max().item<double>(); };
  EXPECT_LE(max_diff(y, yr), tol(yr)) << what << ": output";
  const torch::Tensor up = torch::randn(y.sizes(), y.options().dtype(torch::kFloat));
  (y.to(torch::kFloat) * up).sum().backward();
  (yr.to(torch::kFloat) * up).sum().backward();
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].grad().defined()) << what << ": input " << i;
    EXPECT_EQ(a[i].grad().scalar_type(), b[i].grad().scalar_type()) << what << ": input " << i;
    EXPECT_LE(max_diff(a[i].grad(), b[i].grad()), tol(b[i].grad())) << what << ": gradient of input " << i;
  }
}

void expect_rotary_matches(const torch::Device& device) {
  torch::manual_seed(6);
  const int64_t B = 2, H = 3, T = 5;
  // Head widths whose halves are shorter than a CPU vector register, and one and a half of them.
  for (int64_t D : {8, 24}) {
    const std::string width = " D=" + std::to_string(D);
    // Angles whose two halves differ, so a kernel that read one half's cosine for the other shows.
    const torch::Tensor angles = torch::randn({T, D}, device) * 3;
    const torch::Tensor cos = angles.cos(), sin = angles.sin();
    for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
      // As attention makes them: (B, T, H, D) viewed as (B, H, T, D), not contiguous.
      const torch::Tensor x = torch::randn({B, T, H, D}, torch::TensorOptions(device).dtype(dtype)).transpose(1, 2);
      expect_same_with_grads([&](auto& in) { return kernels::rotary(in[0], cos, sin); },
                             [&](auto& in) { return kernels::rotary_reference(in[0], cos, sin); }, {x},
                             std::string("rotary ") + c10::toString(dtype) + width);
      // On a CPU also the CUDA kernel's own arithmetic (fused_math.h), which fp32 on AVX2 does not run.
      if (!device.is_cuda())
        expect_same_with_grads([&](auto& in) { return kernels::rotary_kernel_arithmetic(in[0], cos, sin); },
                               [&](auto& in) { return kernels::rotary_reference(in[0], cos, sin); }, {x},
                               std::string("rotary ") + c10::toString(dtype) + width + ", the kernel's arithmetic");
      const torch::Tensor y = kernels::rotary(x, cos, sin);
      EXPECT_EQ(y.strides(), x.strides()) << "the output keeps the input's layout";
    }
    // A contiguous (B, H, T, D) input.
    const torch::Tensor xc = torch::randn({B, H, T, D}, device);
    EXPECT_LE(max_diff(kernels::rotary(xc, cos, sin), kernels::rotary_reference(xc, cos, sin)), 1e-5) << width;
  }
  // A wrong shape refused by name.
  const torch::Tensor angles = torch::randn({T, 8}, device);
  const std::string e = test::error_of([&] { kernels::rotary(torch::randn({B, H, T, 9}, device), angles.cos(), angles.sin()); });
  EXPECT_NE(e.find("rotary: expected x (B, H, T, D) with D even"), std::string::npos) << e;
}

void expect_swiglu_matches(const torch::Device& device) {
  torch::manual_seed(7);
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    const auto options = torch::TensorOptions(device).dtype(dtype);
    // 924 elements: whole 16-byte packs and a tail on a GPU; and the same moved one element into
    // a buffer (differentiably), which no pack fits: every element one at a time.
    for (int64_t offset : {0, 1}) {
      auto place = [offset](const torch::Tensor& t) {
        if (offset == 0) return t;
        torch::Tensor buffer = torch::cat({torch::zeros({offset}, t.options()), t.flatten()});  // (offset + n)
        return buffer.narrow(0, offset, t.numel()).view(t.sizes());                            // storage offset 1
      };
      // Gates well into both tails of the sigmoid, and zero.
      torch::Tensor gate = torch::randn({4, 7, 33}, options) * 4, up = torch::randn({4, 7, 33}, options);
      gate.view({-1})[0] = 0;
      const std::string what = std::string("swiglu ") + c10::toString(dtype) + " at offset " + std::to_string(offset);
      expect_same_with_grads([&](auto& in) { return kernels::swiglu(place(in[0]), place(in[1])); },
                             [&](auto& in) { return kernels::swiglu_reference(place(in[0]), place(in[1])); }, {gate, up}, what);
      // On a CPU also the CUDA kernel's own arithmetic (fused_math.h), which the CPU path does not run.
      if (!device.is_cuda())
        expect_same_with_grads([&](auto& in) { return kernels::swiglu_kernel_arithmetic(place(in[0]), place(in[1])); },
                               [&](auto& in) { return kernels::swiglu_reference(place(in[0]), place(in[1])); }, {gate, up},
                               what + ", the kernel's arithmetic");
      EXPECT_EQ(place(gate).storage_offset(), offset);
    }
  }
  const std::string e = test::error_of([&] { kernels::swiglu(torch::randn({2, 3}, device), torch::randn({3, 2}, device)); });
  EXPECT_NE(e.find("swiglu: gate and up must match"), std::string::npos) << e;
}

void expect_linear_relu_matches(const torch::Device& device) {
  torch::manual_seed(8);
  for (bool in_out : {false, true}) {  // Linear's (out, in) weight and GPT-2 Conv1D's (in, out)
    for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
      const auto options = torch::TensorOptions(device).dtype(dtype);
      const torch::Tensor x = torch::randn({2, 5, 12}, options);  // (B, T, in): 12 -> 9
      const torch::Tensor w = in_out ? torch::randn({12, 9}, options) : torch::randn({9, 12}, options);
      const torch::Tensor b = torch::randn({9}, options);
      const std::string what = std::string("linear_relu ") + c10::toString(dtype) + (in_out ? " (in, out)" : " (out, in)");
      expect_same_with_grads([&](auto& in) { return kernels::linear_relu(in[0], in[1], in[2], in_out); },
                             [&](auto& in) { return kernels::linear_relu_reference(in[0], in[1], in[2], in_out); },
                             {x, w, b}, what);
      // About half the outputs cut by the ReLU, so its mask is what the comparison above held.
      const torch::Tensor y = kernels::linear_relu(x, w, b, in_out);
      EXPECT_GT(y.eq(0).sum().item<int64_t>(), 10) << what;
      EXPECT_GT(y.gt(0).sum().item<int64_t>(), 10) << what;
    }
  }
  // A frozen weight and bias (a LoRA base): only X's gradient, the same as the composite's.
  const torch::Tensor w = torch::randn({9, 12}, device), b = torch::randn({9}, device);
  torch::Tensor x = torch::randn({7, 12}, device).requires_grad_(true), xr = x.detach().clone().requires_grad_(true);
  (kernels::linear_relu(x, w, b) * torch::arange(9, x.options())).sum().backward();
  (kernels::linear_relu_reference(xr, w, b) * torch::arange(9, x.options())).sum().backward();
  EXPECT_LE(max_diff(x.grad(), xr.grad()), 1e-5);
  EXPECT_FALSE(w.grad().defined());
  // Under bf16 autocast, fp32 leaves: the product in bf16 as linear's is, gradients in fp32.
  {
    dist::PrecisionGuard bf16(device, "bf16");
    const torch::Tensor xa = torch::randn({3, 4, 12}, device);
    expect_same_with_grads([&](auto& in) { return kernels::linear_relu(in[0], in[1], in[2]); },
                           [&](auto& in) { return kernels::linear_relu_reference(in[0], in[1], in[2]); },
                           {xa, w, b}, "linear_relu under bf16 autocast");
    EXPECT_EQ(kernels::linear_relu(xa, w, b).scalar_type(), torch::kBFloat16);
  }
  const std::string e = test::error_of([&] { kernels::linear_relu(torch::randn({3, 11}, device), w, b); });
  EXPECT_NE(e.find("linear_relu: expected x (..., 12) and bias (9)"), std::string::npos) << e;
}

// A bf16 / fp16 linear layer with its products in fp32 against PyTorch's own product in that dtype
// (which rounds its fp32 sums once too): outputs and gradients to one rounding in that dtype.
TEST(Fp32Products, EqualTheLowPrecisionProduct) {
  torch::manual_seed(9);
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    const auto options = torch::TensorOptions().dtype(dtype);
    const torch::Tensor x = torch::randn({2, 5, 12}, options), w = torch::randn({9, 12}, options), b = torch::randn({9}, options);
    const std::string what = std::string("fp32 products ") + c10::toString(dtype);
    expect_same_with_grads([&](auto& in) { return kernels::linear_with_fp32_products(in[0], in[1], in[2]); },
                           [&](auto& in) { return torch::linear(in[0], in[1], in[2]); }, {x, w, b}, what);
    // No bias, and a weight stored (in, out) and viewed (out, in), as GPT-2's Conv1D passes it.
    const torch::Tensor w_in_out = torch::randn({12, 9}, options);
    expect_same_with_grads([&](auto& in) { return kernels::linear_with_fp32_products(in[0], in[1].t(), torch::Tensor()); },
                           [&](auto& in) { return torch::linear(in[0], in[1].t()); }, {x, w_in_out}, what + ", no bias, (in, out)");
    // A frozen weight (a LoRA base): the input's gradient alone.
    torch::Tensor xg = x.clone().requires_grad_(true);
    kernels::linear_with_fp32_products(xg, w, b).to(torch::kFloat).sum().backward();
    EXPECT_TRUE(xg.grad().defined()) << what;
    EXPECT_FALSE(w.grad().defined()) << what;
  }
  // Which weights take it: low precision on a CPU that lacks the fast products; never fp32.
  EXPECT_FALSE(kernels::wants_fp32_products(torch::randn({3, 3})));
  const std::string e = test::error_of(
      [&] { kernels::linear_with_fp32_products(torch::randn({2, 4}), torch::randn({3, 5}), torch::Tensor()); });
  EXPECT_NE(e.find("linear_with_fp32_products: expected x (..., in), weight (out, in)"), std::string::npos) << e;
}

// Under bf16 autocast, fp32 leaves: kernels::linear, scaled_dot_product_attention and conv2d take
// autocast's casts and dtype as PyTorch's own ops do (here, without AVX-512, through fp32
// products; with it, as PyTorch's own), outputs and gradients to one bf16 rounding.
TEST(Fp32Products, FollowBf16AutocastLikePyTorch) {
  torch::manual_seed(10);
  dist::PrecisionGuard bf16(torch::kCPU, "bf16");
  const torch::Tensor x = torch::randn({2, 5, 12}), w = torch::randn({9, 12}), b = torch::randn({9});
  expect_same_with_grads([&](auto& in) { return kernels::linear(in[0], in[1], in[2]); },
                         [&](auto& in) { return torch::linear(in[0], in[1], in[2]); }, {x, w, b}, "linear");
  expect_same_with_grads([&](auto& in) { return kernels::linear(in[0], in[1].t()); },
                         [&](auto& in) { return torch::linear(in[0], in[1].t()); }, {x, torch::randn({12, 9})},
                         "linear, no bias, (in, out)");
  EXPECT_EQ(kernels::linear(x, w, b).scalar_type(), torch::kBFloat16);
  const torch::Tensor q = torch::randn({2, 3, 7, 8}), k = torch::randn({2, 3, 7, 8}), v = torch::randn({2, 3, 7, 8});
  for (bool causal : {false, true})
    expect_same_with_grads(
        [&](auto& in) { return kernels::scaled_dot_product_attention(in[0], in[1], in[2], std::nullopt, 0.0, causal, std::nullopt, false); },
        [&](auto& in) { return torch::scaled_dot_product_attention(in[0], in[1], in[2], std::nullopt, 0.0, causal); }, {q, k, v},
        causal ? "attention, causal" : "attention");
  const torch::Tensor images = torch::randn({2, 3, 8, 8}), patches = torch::randn({6, 3, 4, 4}), pb = torch::randn({6});
  expect_same_with_grads([&](auto& in) { return kernels::conv2d(in[0], in[1], in[2], {4, 4}); },
                         [&](auto& in) { return torch::conv2d(in[0], in[1], in[2], {4, 4}); }, {images, patches, pb},
                         "patch convolution");
  // Whether they took the fp32 products is this CPU's capability.
  EXPECT_EQ(kernels::autocast_wants_fp32_products(torch::kCPU), !kernels::cpu_has_fast_low_precision_products());
}

// Outside autocast, or for an operand autocast leaves (bf16 already, float64, none), the operand
// itself; under bf16 autocast an fp32 one's bf16 rounding, a weight's from autocast's cache.
TEST(AutocastOperand, CastsAnFp32OperandOnlyUnderAutocast) {
  const torch::Tensor x = torch::randn({3, 8});
  EXPECT_TRUE(kernels::autocast_operand(x).is_same(x));
  dist::PrecisionGuard bf16(torch::kCPU, "bf16");
  const torch::Tensor h = kernels::autocast_operand(x);
  EXPECT_EQ(h.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(h, x.to(torch::kBFloat16)));
  const torch::Tensor b = x.to(torch::kBFloat16), d = x.to(torch::kDouble);
  EXPECT_TRUE(kernels::autocast_operand(b).is_same(b));
  EXPECT_TRUE(kernels::autocast_operand(d).is_same(d));
  EXPECT_FALSE(kernels::autocast_operand(torch::Tensor()).defined());
  const torch::Tensor w = torch::randn({4, 8}, torch::requires_grad());
  EXPECT_TRUE(kernels::autocast_operand(w).is_same(kernels::autocast_operand(w)));
}

// Three products of one fp32 input under bf16 autocast (q, k and v of a norm's output), through one
// cast against each casting its own: the same outputs and weight gradients to the bit (the same
// bf16 values go in), the input's gradient to the rounding of its bf16 sum, and one bf16 copy of
// the input kept for the backward pass where the three casts keep three.
TEST(AutocastOperand, ProductsShareOneCastAndOneCopy) {
  torch::manual_seed(13);
  const torch::Tensor x0 = torch::randn({64, 256});
  std::vector<torch::Tensor> w0;
  for (int i = 0; i < 3; ++i) w0.push_back(torch::randn({16, 256}) / 16);
  struct Run {
    std::vector<torch::Tensor> ys, dw;
    torch::Tensor dx;
    int64_t kept = 0;
  };
  auto run = [&](bool shared) {
    Run r;
    const torch::Tensor leaf = x0.clone().requires_grad_(true);
    const torch::Tensor x = leaf.clone();  // an activation: autocast caches the casts of leaves only
    std::vector<torch::Tensor> w;
    for (const auto& t : w0) w.push_back(t.clone().requires_grad_(true));
    {
      dist::PrecisionGuard bf16(torch::kCPU, "bf16");
      test::CpuBytes bytes;
      const torch::Tensor h = shared ? kernels::autocast_operand(x) : x;
      for (const auto& wi : w) r.ys.push_back(kernels::linear(h, wi));
      r.kept = bytes.live();
      for (const auto& y : r.ys) r.kept -= static_cast<int64_t>(y.nbytes());
    }
    torch::Tensor total = torch::zeros({}, torch::kFloat);
    for (size_t i = 0; i < r.ys.size(); ++i) total = total + (r.ys[i].to(torch::kFloat) * static_cast<double>(i + 1)).sum();
    total.backward();
    r.dx = leaf.grad();
    for (const auto& wi : w) r.dw.push_back(wi.grad());
    return r;
  };
  const Run once = run(true), each = run(false);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(torch::equal(once.ys[i], each.ys[i])) << "output " << i;
    EXPECT_TRUE(torch::equal(once.dw[i], each.dw[i])) << "weight gradient " << i;
  }
  EXPECT_EQ(once.dx.scalar_type(), torch::kFloat);
  EXPECT_LE(max_diff(once.dx, each.dx), 1e-2 * each.dx.abs().max().item<double>());
  // Kept besides the outputs: the weights' bf16 casts (autocast's cache) and the input's copies.
  const int64_t copy = x0.numel() * 2;
  EXPECT_EQ(each.kept - once.kept, 2 * copy);
}

// An fp32 adapter over a bf16 or fp16 input, keeping the input in its dtype: the same output and
// gradients as autograd's linear(x.to(fp32), A), the input's gradient in its own dtype.
TEST(UpcastLinear, EqualsLinearOfTheCastInput) {
  torch::manual_seed(11);
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    const std::string what = std::string("upcast_linear ") + c10::toString(dtype);
    const torch::Tensor x = torch::randn({2, 5, 12}).to(dtype), a = torch::randn({4, 12});
    torch::Tensor x1 = x.clone().requires_grad_(true), a1 = a.clone().requires_grad_(true);
    torch::Tensor x2 = x.clone().requires_grad_(true), a2 = a.clone().requires_grad_(true);
    const torch::Tensor y1 = kernels::upcast_linear(x1, a1), y2 = torch::linear(x2.to(torch::kFloat), a2);
    ASSERT_EQ(y1.scalar_type(), torch::kFloat) << what;
    EXPECT_LE(max_diff(y1, y2), 1e-6) << what;
    const torch::Tensor up = torch::randn(y1.sizes());
    (y1 * up).sum().backward();
    (y2 * up).sum().backward();
    EXPECT_EQ(x1.grad().scalar_type(), dtype) << what;
    EXPECT_LE(max_diff(x1.grad(), x2.grad()), 0.0) << what;  // the same fp32 sums, rounded once the same way
    EXPECT_LE(max_diff(a1.grad(), a2.grad()), 1e-5) << what;
  }
  // An input that needs no gradient (a frozen embedding's output): A's gradient alone.
  torch::Tensor a = torch::randn({4, 12}, torch::requires_grad());
  kernels::upcast_linear(torch::randn({3, 12}).to(torch::kBFloat16), a).sum().backward();
  EXPECT_TRUE(a.grad().defined());
  const std::string e = test::error_of([&] { kernels::upcast_linear(torch::randn({3, 12}), torch::randn({4, 12})); });
  EXPECT_NE(e.find("upcast_linear: expected x (..., in) in bf16 or fp16 and an fp32 weight"), std::string::npos) << e;
}

TEST(FusedLinearRelu, EqualsTheComposite) { expect_linear_relu_matches(torch::kCPU); }
TEST(FusedRotary, EqualsTheComposite) { expect_rotary_matches(torch::kCPU); }
TEST(FusedSwiglu, EqualsTheComposite) { expect_swiglu_matches(torch::kCPU); }

TEST(CudaKernels, FusedRotaryEqualsTheComposite) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_rotary_matches(torch::Device(torch::kCUDA, 0));
}

TEST(CudaKernels, FusedLinearReluEqualsTheComposite) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_linear_relu_matches(torch::Device(torch::kCUDA, 0));
}

TEST(CudaKernels, FusedSwigluEqualsTheCompositeAndHoldsLess) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device gpu(torch::kCUDA, 0);
  expect_swiglu_matches(gpu);
  // What the forward pass leaves allocated for the backward: the composite keeps silu(gate) beside
  // its output; the fused kernel its output alone (gate and up are the caller's either way).
  // Both inputs trainable, as the MLP's two projections are (the composite then keeps silu(gate)
  // for up's gradient).
  const torch::Tensor gate = torch::randn({4096, 4096}, gpu).requires_grad_(true);
  const torch::Tensor up = torch::randn({4096, 4096}, gpu).requires_grad_(true);
  const int64_t one = 4096 * 4096 * 4;
  int64_t before = dist::cuda_allocated(0);
  torch::Tensor yr = kernels::swiglu_reference(gate, up);
  const int64_t composite = dist::cuda_allocated(0) - before;
  before = dist::cuda_allocated(0);
  torch::Tensor yf = kernels::swiglu(gate, up);
  const int64_t fused = dist::cuda_allocated(0) - before;
  EXPECT_GE(composite, 2 * one) << "silu(gate) and the output";
  EXPECT_LE(fused, one) << "the output alone";
}

}  // namespace
}  // namespace lofi
