#include "lofi/model/blocks.h"

#include <limits>

#include "lofi/error.h"
#include "lofi/kernels/fp32_products.h"
#include "lofi/kernels/layer_norm.h"
#include "lofi/kernels/rms_norm.h"
#include "lofi/model/deferred_weights.h"

namespace lofi::model {

torch::nn::LayerNorm lm_layer_norm(const LmConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model}).eps(c.layer_norm_eps));
}

torch::nn::Embedding lm_embedding(int64_t rows, int64_t width) {
  if (!init_draws_skipped()) return torch::nn::Embedding(rows, width);
  // Given its weight, the module registers it as it is instead of drawing one (host memory, torch's
  // default dtype, as its own).
  return torch::nn::Embedding(torch::nn::EmbeddingOptions(rows, width)._weight(torch::empty({rows, width})));
}

torch::Tensor maybe_dropout(const torch::Tensor& x, double p, bool training) {
  return p > 0 && training ? torch::dropout(x, p, true) : x;
}

torch::Tensor activate(const torch::Tensor& x, const std::string& activation) {
  if (activation == "relu") return torch::relu(x);
  if (activation == "gelu") return torch::gelu(x, "tanh");
  if (activation == "gelu_erf") return torch::gelu(x);
  if (activation == "silu") return torch::silu(x);
  fail("unknown activation \"", activation, "\" (expected ", activation_list(), ")");
}

bool is_activation(const std::string& a) { return a == "relu" || a == "gelu" || a == "gelu_erf" || a == "silu"; }

std::string activation_list() {
  return "\"relu\", \"gelu\" (tanh approximation), \"gelu_erf\" (exact) or \"silu\"";
}

Packing pack_rows(const torch::Tensor& segments) {
  const int64_t T = segments.size(1);
  torch::Tensor t = torch::arange(T, segments.options()).expand_as(segments);                  // (B, T)
  torch::Tensor starts = torch::ones_like(segments, torch::kBool);                             // (B, T)
  if (T > 1) starts.narrow(1, 1, T - 1).copy_(segments.narrow(1, 1, T - 1) != segments.narrow(1, 0, T - 1));
  // The latest sample start at or before each token: a running maximum of the starts' indices.
  torch::Tensor first = std::get<0>(torch::cummax(torch::where(starts, t, torch::zeros_like(t)), 1));  // (B, T)
  torch::Tensor same = segments.unsqueeze(2) == segments.unsqueeze(1);                          // (B, T, T): query, key
  torch::Tensor causal = torch::ones({T, T}, segments.options().dtype(torch::kBool)).tril();    // (T, T)
  return {t - first, same.logical_and(causal).unsqueeze(1)};                                    // (B, T), (B, 1, T, T)
}

namespace {
// sdpa's optional mask: an undefined tensor is no mask.
std::optional<torch::Tensor> optional_mask(const torch::Tensor& mask) {
  return mask.defined() ? std::optional<torch::Tensor>(mask) : std::nullopt;
}

// LibTorch's scaled_dot_product_attention, in fp32 products where this CPU's are slow in the heads'
// dtype (kernels/fp32_products.h).
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& mask,
                     double dropout, bool is_causal, double scale, bool grouped) {
  return kernels::scaled_dot_product_attention(q, k, v, optional_mask(mask), dropout, is_causal, scale, grouped);
}
}  // namespace

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t n_head,
                               double dropout, bool training, const torch::Tensor& mask) {
  const int64_t B = q.size(0), T = q.size(1), C = q.size(2), D = C / n_head;
  auto heads = [&](const torch::Tensor& t) {
    return t.view({B, T, n_head, D}).transpose(1, 2);  // (B, T, C) -> (B, H, T, D)
  };
  // LibTorch's fused kernel (flash / memory-efficient on GPU, the fused CPU kernel on CPU): a
  // causal mask, dropout on the attention probabilities, and no scaling of its own (scale 1).
  torch::Tensor y = attend(heads(q), heads(k), heads(v), mask, /*dropout=*/training ? dropout : 0.0, /*is_causal=*/!mask.defined(),
                           /*scale=*/1.0, /*grouped=*/false);  // (B, H, T, D)
  return y.transpose(1, 2).contiguous().view({B, T, C});                  // (B, H, T, D) -> (B, T, C)
}

torch::Tensor expand_kv_heads(const torch::Tensor& kv, int64_t heads) {
  if (kv.size(1) == heads) return kv;
  return kv.repeat_interleave(heads / kv.size(1), /*dim=*/1);  // (B, H_kv, T, D) -> (B, H, T, D)
}

torch::Tensor eager_attention(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v_in,
                              const torch::Tensor& allowed, double scale, double cap, const torch::Tensor& sinks, double p) {
  const int64_t H = q_in.size(1);
  return kernels::attention_with_fp32_products(q_in, k_in, v_in, [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
    torch::Tensor scores = torch::matmul(q, expand_kv_heads(k, H).transpose(2, 3)) * scale;  // (B, H, T, D) x (B, H, D, T) -> (B, H, T, T)
    if (cap > 0) scores = torch::tanh(scores / cap) * cap;
    scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
    if (sinks.defined()) {  // (H) -> (B, H, T, 1) beside the scores: (B, H, T, T + 1)
      const torch::Tensor column = sinks.to(scores.scalar_type()).view({1, H, 1, 1}).expand({scores.size(0), H, scores.size(2), 1});
      scores = torch::cat({scores, column}, -1);
    }
    torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat);                   // (B, H, T, T [+ 1])
    if (sinks.defined()) probs = probs.narrow(-1, 0, probs.size(-1) - 1);              // the sink's share dropped: (B, H, T, T)
    return torch::matmul(maybe_dropout(probs.to(q.scalar_type()), p, true), expand_kv_heads(v, H));  // -> (B, H, T, D)
  });
}

namespace {

struct SinkKeyed {
  torch::Tensor q, k, v, keys;  // (B, H, T + 1, D'), (B, H_kv, T + 1, D') twice, allowed keys or none
};

// A sink logit per head (gpt-oss) through the fused kernels, which take no sink: the sink becomes
// one more key in front that every query sees, with a value of zeros, so it takes its share of each
// softmax and adds nothing. Its score must be the head's logit s_h whatever the query: one more
// feature carries it, s_h / SCALE in every query of head h, 1 in the sink key, 0 in the real keys
// (so Q'K'^T * SCALE is QK^T * SCALE for the real keys and s_h for the sink; the sinks' gradient
// comes back through that feature). A query row of zeros in front keeps the causal mask square:
// query i + 1 sees the sink and keys 0..i. The caller drops that row and the extra features.
// CUDA's kernels want head dims in multiples of 8: there the feature comes with 7 zeros.
SinkKeyed with_sink_key(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& keys,
                        const torch::Tensor& sinks, double scale) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Hkv = k.size(1);
  const int64_t extra = q.is_cpu() ? 1 : 8, width = std::max(D, v.size(3)) + extra;
  auto features = [&](const torch::Tensor& t, const torch::Tensor& last) {  // (b, h, t, d) -> (b, h, t, width)
    const int64_t pad = width - t.size(3) - (last.defined() ? 1 : 0);
    std::vector<torch::Tensor> parts{t};
    if (last.defined()) parts.push_back(last);
    parts.push_back(torch::zeros({t.size(0), t.size(1), t.size(2), pad}, t.options()));
    return torch::cat(parts, -1);
  };
  auto in_front = [](const torch::Tensor& row, const torch::Tensor& t) { return torch::cat({row, t}, 2); };  // T -> T + 1
  const torch::Tensor logit = (sinks / scale).to(q.scalar_type()).view({1, H, 1, 1}).expand({B, H, T, 1});  // (B, H, T, 1)
  torch::Tensor sink_key = torch::zeros({B, Hkv, 1, width}, k.options());
  sink_key.narrow(-1, D, 1).fill_(1);
  SinkKeyed out;
  out.q = in_front(torch::zeros({B, H, 1, width}, q.options()), features(q, logit));  // (B, H, T + 1, width)
  out.k = in_front(sink_key, features(k, torch::zeros({B, Hkv, T, 1}, k.options())));  // (B, H_kv, T + 1, width)
  out.v = in_front(torch::zeros({B, Hkv, 1, width}, v.options()), features(v, {}));    // (B, H_kv, T + 1, width)
  if (keys.defined()) {  // the sink's column, and the front query's row, allowed: (..., T + 1, T + 1)
    const torch::Tensor columns = torch::cat({torch::ones_like(keys.narrow(-1, 0, 1)), keys}, -1);
    out.keys = torch::cat({torch::ones_like(columns.narrow(-2, 0, 1)), columns}, -2);
  }
  return out;
}

}  // namespace

torch::Tensor causal_attention_heads(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v_in,
                                     double scale, int64_t window, double dropout, bool training, const torch::Tensor& mask,
                                     double softcap, const torch::Tensor& sinks) {
  const int64_t T = q_in.size(2);
  // Which keys each query sees: j <= i, within the window i - window < j, within the packing mask.
  auto allowed = [&] {
    const torch::Tensor i = torch::arange(T, q_in.options().dtype(torch::kLong)).unsqueeze(1);  // (T, 1)
    const torch::Tensor j = torch::arange(T, q_in.options().dtype(torch::kLong)).unsqueeze(0);  // (1, T)
    torch::Tensor keys = j <= i;                                                                // (T, T)
    if (window > 0) keys = keys.logical_and(j > i - window);
    return mask.defined() ? keys.logical_and(mask) : keys;                                      // (B, 1, T, T)
  };
  const double p = training ? dropout : 0.0;
  if (softcap > 0) return eager_attention(q_in, k_in, v_in, allowed(), scale, softcap, sinks, p);
  // The keys allowed, where causality alone does not say it: the window's, or the packing mask
  // (which holds causality).
  torch::Tensor keys = window > 0 && window < T ? allowed() : mask;
  torch::Tensor q = q_in, k_shared = k_in, v_shared = v_in;
  if (sinks.defined()) {
    SinkKeyed keyed = with_sink_key(q_in, k_in, v_in, keys, sinks, scale);
    q = keyed.q, k_shared = keyed.k, v_shared = keyed.v, keys = keyed.keys;
  }
  // CUDA's flash kernel takes grouped heads but no mask and no fp32; its memory-efficient kernel
  // takes masks and fp32 but not grouped heads (PyTorch's sdp_utils): either would send grouped
  // heads with a mask to the math fallback, (B, H, T, T) scores kept for backward. Expanded heads
  // reach the memory-efficient kernel. The CPU's fused kernel takes all three as they are.
  const bool expand = !q.is_cpu() && k_shared.size(1) != q.size(1) && (keys.defined() || q.scalar_type() == torch::kFloat);
  const torch::Tensor k = expand ? expand_kv_heads(k_shared, q.size(1)) : k_shared;
  const torch::Tensor v = expand ? expand_kv_heads(v_shared, q.size(1)) : v_shared;
  const torch::Tensor y = attend(q, k, v, keys, p, /*is_causal=*/!keys.defined(), scale, /*grouped=*/k.size(1) != q.size(1));
  if (!sinks.defined()) return y;
  return y.narrow(2, 1, T).narrow(-1, 0, v_in.size(3));  // (B, H, T + 1, width) -> (B, H, T, D)
}

std::pair<torch::Tensor, torch::Tensor> add_layer_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                                       torch::nn::LayerNorm& norm) {
  const torch::Tensor &w = norm->weight, &b = norm->bias;
  if (x.scalar_type() == torch::kFloat && w.defined() && b.defined() && w.scalar_type() == torch::kFloat &&
      b.scalar_type() == torch::kFloat && norm->options.normalized_shape().size() == 1)
    return kernels::add_layer_norm(x, residual, w, b, norm->options.eps());
  torch::Tensor sum = x + residual;
  return {sum, norm(sum)};
}

RmsNormImpl::RmsNormImpl(int64_t width, double eps_, bool unit_offset_) : eps(eps_), unit_offset(unit_offset_) {
  weight = register_parameter("weight", unit_offset ? torch::zeros({width}, parameter_options()) : torch::ones({width}, parameter_options()));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  // Gemma: an fp32 input and scale take the fused pass with the scale 1 + weight (the same
  // arithmetic); any other keeps Gemma's order.
  if (unit_offset) {
    if (x.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat) return kernels::rms_norm(x, weight + 1, eps);
    return unit_offset_rms_norm_reference(x, weight, eps);
  }
  // fp32 input (the residual stream, also under autocast): one fused pass each way
  // (kernels/rms_norm.h), the same arithmetic as below. A bf16 or fp16 stream keeps transformers'
  // order (scale after casting back), which a fused kernel would round differently, without
  // autograd's fp32 copy of the input (kernels::rms_norm_low_precision).
  if (x.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat) return kernels::rms_norm(x, weight, eps);
  if (x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kHalf) return kernels::rms_norm_low_precision(x, weight, eps);
  return rms_norm_reference(x, weight, eps);
}

std::pair<torch::Tensor, torch::Tensor> RmsNormImpl::forward_added(const torch::Tensor& x, const torch::Tensor& residual) {
  const bool fused = x.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat;
  if (fused) return kernels::add_rms_norm(x, residual, unit_offset ? weight + 1 : weight, eps);
  torch::Tensor sum = x + residual;
  return {sum, forward(sum)};
}

namespace {
torch::Tensor normalized_in_fp32(const torch::Tensor& x, double eps) {
  torch::Tensor h = x.to(torch::kFloat);
  return h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
}
}  // namespace

torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return weight * normalized_in_fp32(x, eps).to(x.scalar_type());
}

torch::Tensor unit_offset_rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return (normalized_in_fp32(x, eps) * (1 + weight.to(torch::kFloat))).to(x.scalar_type());
}

}  // namespace lofi::model
