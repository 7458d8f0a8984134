#include "lofi/kernels/cross_entropy.h"

#include <ATen/autocast_mode.h>

#include <algorithm>

#include "lofi/error.h"
#include "lofi/kernels/fp32_products.h"

namespace lofi::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The dtype the head's matmuls run in: autocast's where it is on for H's device (as
// torch.autocast would run linear), else H's own.
c10::ScalarType matmul_dtype(const torch::Tensor& h) {
  const c10::DeviceType type = h.device().type();
  if (at::autocast::is_autocast_enabled(type)) return at::autocast::get_autocast_dtype(type);
  return h.scalar_type();
}

// Tokens per softmax chunk: its fp32 log-probabilities stay near 256 MB (about 520 tokens at Llama
// 3's 128,256 words, 1,300 at OPT's 50,272).
int64_t softmax_tokens(int64_t requested, int64_t tokens, int64_t vocab) {
  if (requested > 0) return std::clamp<int64_t>(requested, 1, std::max<int64_t>(tokens, 1));
  constexpr int64_t kLogitsPerChunk = int64_t{64} << 20;
  return std::clamp<int64_t>(kLogitsPerChunk / vocab, 1, std::max<int64_t>(tokens, 1));
}

// Tokens per weight-gradient group: every group adds a (V, E) product into the fp32 gradient of
// the head (a pass over 12 bytes per weight), so groups are a few softmax chunks long: their
// gradient logits in the matmul's dtype stay near 512 MB (about 2,100 tokens at Llama 3's
// vocabulary, where 520-token groups would spend 100 GB of memory traffic a step on that sum).
int64_t group_tokens(int64_t requested, int64_t chunk, int64_t tokens, int64_t vocab) {
  const int64_t want = requested > 0 ? requested : (int64_t{256} << 20) / vocab;
  const int64_t chunks = std::max<int64_t>(1, want / chunk);  // a whole number of softmax chunks
  return std::clamp<int64_t>(chunks * chunk, 1, std::max<int64_t>(tokens, 1));
}

struct Result {
  torch::Tensor loss;            // () fp32: the mean over kept tokens
  torch::Tensor grad_h, grad_w;  // d loss / d H (N, E), d loss / d WEIGHT (V, E); undefined unless asked
};

// One pass over the tokens: the loss, and when asked the gradients of the mean loss. Groups of
// GROUP tokens, each in softmax chunks of CHUNK tokens; logits soft-capped where SOFTCAP > 0.
Result run_chunks(const torch::Tensor& h, const torch::Tensor& weight, const torch::Tensor& targets, int64_t chunk,
                  int64_t group, double softcap, bool want_grad_h, bool want_grad_w) {
  const int64_t N = h.size(0), V = weight.size(0);
  const c10::ScalarType dtype = matmul_dtype(h);
  const torch::Tensor w = weight.to(dtype);                                              // (V, E), cast once
  // A bf16 or fp16 product on a CPU without fast ones in that dtype: in fp32 from the same values,
  // rounded to the matmul's dtype as its own product would be (kernels/fp32_products.h).
  const bool fp32_products = wants_fp32_products(w);
  std::optional<NoCpuAutocast> no_autocast;  // autocast would cast the fp32 operands back
  if (fp32_products) no_autocast.emplace();
  const torch::Tensor wp = fp32_products ? w.to(torch::kFloat) : w;                     // (V, E): the products' operand
  auto product = [&](const torch::Tensor& a, const torch::Tensor& b) {
    return fp32_products ? torch::mm(a.to(torch::kFloat), b.to(torch::kFloat)).to(dtype) : torch::mm(a, b);
  };
  const torch::Tensor kept = targets.ne(kIgnoreIndex);                                   // (N)
  const torch::Tensor count = kept.sum().clamp_min(1).to(torch::kFloat);                 // () on the device: no sync
  const torch::Tensor safe_targets = torch::where(kept, targets, torch::zeros_like(targets));  // (N), ignored -> 0
  const bool want_grad = want_grad_h || want_grad_w;
  Result r;
  torch::Tensor total = torch::zeros({}, h.options().dtype(torch::kFloat));
  if (want_grad_h) r.grad_h = torch::empty_like(h, torch::MemoryFormat::Contiguous);
  if (want_grad_w) r.grad_w = torch::zeros_like(weight, torch::MemoryFormat::Contiguous);
  const int64_t step = softmax_tokens(chunk, N, V), span = group_tokens(group, step, N, V);
  torch::Tensor g_buffer;  // (span, V) in the matmul's dtype: the group's gradient logits
  if (want_grad) g_buffer = torch::empty({span, V}, h.options().dtype(dtype));
  for (int64_t first = 0; first < N; first += span) {
    const int64_t m = std::min(span, N - first);
    const torch::Tensor hg = h.narrow(0, first, m).to(dtype);                           // (m, E)
    const torch::Tensor hp = fp32_products ? hg.to(torch::kFloat) : hg;  // (m, E): the products' operand, cast once a group
    for (int64_t start = 0; start < m; start += step) {
      const int64_t n = std::min(step, m - start);
      const torch::Tensor tc = safe_targets.narrow(0, first + start, n).unsqueeze(1);    // (n, 1)
      const torch::Tensor kc = kept.narrow(0, first + start, n).to(torch::kFloat);       // (n)
      // log-probabilities in fp32 from logits in the matmul's dtype (rounded there, as autocast's are)
      torch::Tensor logits = product(hp.narrow(0, start, n), wp.t());                   // (n, V)
      torch::Tensor capped;  // (n, V) fp32: tanh(logits / softcap), kept for its derivative
      if (softcap > 0) {
        capped = torch::tanh(logits.to(torch::kFloat) / softcap);
        logits = capped * softcap;
      }
      torch::Tensor logp = torch::log_softmax(logits, 1, torch::kFloat);                // (n, V)
      // Ignored rows are left out (not multiplied by 0, which would carry a NaN of theirs along).
      total -= torch::where(kc > 0, logp.gather(1, tc).squeeze(1), 0.0).sum();
      if (!want_grad) continue;
      // d mean / d logits = (softmax - one_hot(target)) / count on kept rows, 0 on ignored ones:
      // built in place of the log-probabilities, scaled and cast in one pass.
      logp.exp_();
      logp.scatter_add_(1, tc, torch::full({n, 1}, -1.0, logp.options()));
      // Through the cap: d (c tanh(z / c)) / dz = 1 - tanh(z / c)^2.
      if (softcap > 0) logp.mul_(capped.square_().neg_().add_(1));
      torch::Tensor g = g_buffer.narrow(0, start, n);                                    // (n, V)
      torch::mul_out(g, logp, (kc / count).unsqueeze(1));
    }
    if (!want_grad) continue;
    const torch::Tensor g = g_buffer.narrow(0, 0, m);                                    // (m, V)
    if (want_grad_h) r.grad_h.narrow(0, first, m).copy_(product(g, wp));                // (m, V) @ (V, E) -> (m, E)
    if (want_grad_w) r.grad_w.add_(product(g.t(), hp));                                // (V, m) @ (m, E) -> (V, E)
  }
  r.loss = total / count;
  return r;
}

struct LinearCrossEntropyFunction : torch::autograd::Function<LinearCrossEntropyFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& h, const torch::Tensor& weight,
                               const torch::Tensor& targets, int64_t chunk, int64_t group, double softcap) {
    Result r = run_chunks(h, weight, targets, chunk, group, softcap, h.requires_grad(), weight.requires_grad());
    ctx->save_for_backward({r.grad_h, r.grad_w});
    return r.loss;
  }

  // The gradients were computed in forward; the chain rule only scales them by d out / d loss,
  // in place: no second (V, E) copy of the head's gradient (a second backward through the same
  // graph is refused by autograd's version check on the saved tensors).
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    variable_list saved = ctx->get_saved_variables();
    const torch::Tensor& scale = grad_out[0];  // ()
    auto scaled = [&](torch::Tensor& g) { return g.defined() ? g.mul_(scale.to(g.scalar_type())) : torch::Tensor(); };
    return {scaled(saved[0]), scaled(saved[1]), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

void check_shapes(const torch::Tensor& h, const torch::Tensor& weight, const torch::Tensor& targets) {
  if (h.dim() != 2 || weight.dim() != 2 || targets.dim() != 1 || h.size(1) != weight.size(1) || targets.size(0) != h.size(0))
    fail("linear_cross_entropy: expected hidden states (N, E), a head weight (V, E) and targets (N), found ", h.sizes(),
         ", ", weight.sizes(), " and ", targets.sizes());
}

}  // namespace

torch::Tensor linear_cross_entropy(const torch::Tensor& h, const torch::Tensor& weight, const torch::Tensor& targets,
                                   int64_t chunk, int64_t group, double softcap) {
  check_shapes(h, weight, targets);
  if (!(softcap >= 0)) fail("linear_cross_entropy: softcap must be >= 0 (0: none), found ", softcap);
  const bool grads = torch::GradMode::is_enabled() && (h.requires_grad() || weight.requires_grad());
  if (!grads) return run_chunks(h, weight, targets, chunk, group, softcap, false, false).loss;
  return LinearCrossEntropyFunction::apply(h, weight, targets, chunk, group, softcap);
}

torch::Tensor linear_cross_entropy_reference(const torch::Tensor& h, const torch::Tensor& weight,
                                             const torch::Tensor& targets, double softcap) {
  check_shapes(h, weight, targets);
  torch::Tensor logits = torch::linear(h, weight);                         // (N, V)
  if (softcap > 0) logits = torch::tanh(logits / softcap) * softcap;
  return torch::nn::functional::cross_entropy(logits, targets,             // (N, V), (N)
                                              torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex));
}

}  // namespace lofi::kernels
