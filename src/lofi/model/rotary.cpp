#include "lofi/model/rotary.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "lofi/error.h"
#include "lofi/kernels/rotary.h"
#include "lofi/settings.h"

namespace lofi::model {

namespace {

// 1 / theta^(2i / R), i = 0 .. R/2 - 1: theta^(2i / R) in fp32, as transformers computes both.
torch::Tensor base_powers(double theta, int64_t R) {
  return torch::pow(theta, torch::arange(0, R, 2, torch::kLong).to(torch::kFloat) / static_cast<double>(R));
}

torch::Tensor llama3_inv_freq(const LmConfig& c, const torch::Tensor& inv_freq) {
  // Llama 3.1: long wavelengths slowed by FACTOR, short ones kept, the band between blended.
  const double old_context = static_cast<double>(c.rope_original_max_positions);
  const double low_freq_wavelen = old_context / c.rope_low_freq_factor;
  const double high_freq_wavelen = old_context / c.rope_high_freq_factor;
  torch::Tensor wavelen = 2 * M_PI / inv_freq;
  torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / c.rope_factor, inv_freq);
  torch::Tensor smooth = (old_context / wavelen - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
  torch::Tensor smoothed = (1 - smooth) * scaled / c.rope_factor + smooth * scaled;
  torch::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
  return torch::where(medium, smoothed, scaled);
}

// YaRN (Peng et al. 2023): frequencies that turn fewer than beta_slow times over the original
// context are divided by FACTOR (interpolated), those turning more than beta_fast times kept
// (extrapolated), a linear ramp over the dimensions between.
std::pair<torch::Tensor, double> yarn(const LmConfig& c, int64_t R) {
  const double theta = c.rope_theta, factor = c.rope_factor, original = static_cast<double>(c.rope_original_max_positions);
  auto mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
  double attention = c.rope_attention_factor;
  if (attention <= 0)
    attention = c.rope_mscale > 0 && c.rope_mscale_all_dim > 0 ? mscale(factor, c.rope_mscale) / mscale(factor, c.rope_mscale_all_dim)
                                                               : mscale(factor, 1.0);
  // The dimension at which a frequency turns ROTATIONS times over the original context.
  auto dimension = [&](double rotations) {
    return static_cast<double>(R) * std::log(original / (rotations * 2 * M_PI)) / (2 * std::log(theta));
  };
  double low = dimension(c.rope_beta_fast), high = dimension(c.rope_beta_slow);
  if (c.rope_truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0), high = std::min(high, static_cast<double>(R - 1));
  if (low == high) high += 0.001;  // as transformers: no division by zero
  const torch::Tensor powers = base_powers(theta, R);
  const torch::Tensor extrapolated = 1.0 / powers, interpolated = 1.0 / (factor * powers);
  const torch::Tensor ramp = ((torch::arange(R / 2, torch::kFloat) - low) / (high - low)).clamp(0, 1);
  const torch::Tensor keep = 1 - ramp;  // 1: extrapolated, 0: interpolated
  return {interpolated * (1 - keep) + extrapolated * keep, attention};
}

torch::Tensor factors_tensor(const std::string& text) {
  const std::vector<double> values = rope_factor_list(text);
  return torch::tensor(std::vector<float>(values.begin(), values.end()), torch::kFloat);
}

}  // namespace

std::vector<double> rope_factor_list(const std::string& text) {
  std::vector<double> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const size_t first = item.find_first_not_of(" \t[]"), last = item.find_last_not_of(" \t[]");
    item = first == std::string::npos ? "" : item.substr(first, last - first + 1);
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(item.c_str(), &end);
    if (item.empty() || *end || errno || !std::isfinite(v) || v <= 0)
      fail("a longrope factor list holds positive numbers separated by commas; found \"", item, "\" in \"", text, "\"");
    out.push_back(v);
  }
  return out;
}

std::string rope_factor_text(const std::vector<double>& factors) {
  std::string out;
  for (double v : factors) out += (out.empty() ? "" : ",") + shortest_double(v);
  return out;
}

std::string rotary_problem(const LmConfig& c) {
  const int64_t R = c.rotary_width();
  std::ostringstream why;
  if (R < 2 || R % 2 != 0) {
    why << "head_dim (" << c.head_width() << ") x partial_rotary_factor (" << c.partial_rotary_factor << ") = " << R
        << " rotated features; rotary embeddings turn pairs of features, so it must be even and at least 2";
  } else if (c.rope_scaling == "longrope") {
    for (const auto& [key, text] : {std::pair<const char*, const std::string&>{"rope_short_factor", c.rope_short_factor},
                                    std::pair<const char*, const std::string&>{"rope_long_factor", c.rope_long_factor}}) {
      try {
        if (const size_t n = rope_factor_list(text).size(); static_cast<int64_t>(n) != R / 2) {
          why << key << " has " << n << (n == 1 ? " number" : " numbers") << "; longrope needs one per rotated frequency, " << R / 2 << " (head_dim "
              << c.head_width() << " x partial_rotary_factor " << c.partial_rotary_factor << " / 2)";
          break;
        }
      } catch (const std::exception& e) {
        why << key << ": " << e.what();
        break;
      }
    }
    if (why.str().empty() && c.rope_original_max_positions <= 0) why << "longrope needs rope_original_max_positions > 0";
  } else if (c.rope_scaling == "yarn" && (c.rope_original_max_positions <= 0 || c.rope_factor <= 0)) {
    why << "yarn needs rope_factor > 0 and rope_original_max_positions > 0";
  }
  return why.str();
}

Rotary make_rotary(const LmConfig& c) {
  if (std::string why = rotary_problem(c); !why.empty()) fail("model: ", why);
  const int64_t R = c.rotary_width();
  Rotary r;
  const std::string& kind = c.rope_scaling;
  if (kind == "default") {
    r.inv_freq = 1.0 / base_powers(c.rope_theta, R);
  } else if (kind == "linear") {
    r.inv_freq = 1.0 / base_powers(c.rope_theta, R) / c.rope_factor;
  } else if (kind == "llama3") {
    r.inv_freq = llama3_inv_freq(c, 1.0 / base_powers(c.rope_theta, R));
  } else if (kind == "dynamic") {
    // NTK scaling's base at max_seq_len, the longest sequence lofi runs: theta itself, as transformers
    // computes it up to max_position_embeddings (its base grows only past them).
    const double seq = static_cast<double>(c.max_seq_len), d = static_cast<double>(R);
    const double theta = c.rope_theta * std::pow(c.rope_factor * seq / seq - (c.rope_factor - 1), d / (d - 2));
    r.inv_freq = 1.0 / base_powers(theta, R);
  } else if (kind == "yarn") {
    std::tie(r.inv_freq, r.attention_factor) = yarn(c, R);
  } else if (kind == "longrope") {
    // Phi-3.5 / Phi-4-mini: each frequency divided by its own factor; the long set past the
    // original context, and cos and sin scaled up with log(factor) / log(original context).
    const torch::Tensor powers = base_powers(c.rope_theta, R);
    r.inv_freq = 1.0 / (factors_tensor(c.rope_short_factor) * powers);
    r.long_inv_freq = 1.0 / (factors_tensor(c.rope_long_factor) * powers);
    r.original_positions = c.rope_original_max_positions;
    const double original = static_cast<double>(c.rope_original_max_positions);
    r.attention_factor = c.rope_attention_factor > 0 ? c.rope_attention_factor
                         : c.rope_factor <= 1      ? 1.0
                                                   : std::sqrt(1 + std::log(c.rope_factor) / std::log(original));
  } else {
    fail("model.rope_scaling = \"", kind, "\" is not supported (lofi has \"default\", \"linear\", \"llama3\", \"yarn\", \"longrope\" and \"dynamic\")");
  }
  return r;
}

std::pair<torch::Tensor, torch::Tensor> rope_angles(Rotary& rotary, const Packing& packing, const torch::Tensor& x) {
  const int64_t T = x.size(1);
  // Moved once per device, not per forward: a copy from host memory would wait for the GPU.
  if (rotary.inv_freq.device() != x.device()) {
    rotary.inv_freq = rotary.inv_freq.to(x.device());
    if (rotary.long_inv_freq.defined()) rotary.long_inv_freq = rotary.long_inv_freq.to(x.device());
  }
  // Angles in fp32 (an outer product as elementwise products, which autocast leaves in fp32),
  // then in the activations' dtype, as transformers computes them.
  torch::Tensor positions, inv_freq = rotary.inv_freq;
  if (packing.empty()) {
    positions = torch::arange(T, torch::TensorOptions(torch::kFloat).device(x.device()));  // (T)
    if (rotary.long_inv_freq.defined() && T > rotary.original_positions) inv_freq = rotary.long_inv_freq;
  } else {
    positions = packing.positions.to(torch::kFloat).unsqueeze(1);  // (B, 1, T)
    if (rotary.long_inv_freq.defined())  // transformers: max(position_ids) + 1 > original, over the batch
      inv_freq = torch::where(positions.max() + 1 > static_cast<double>(rotary.original_positions), rotary.long_inv_freq, inv_freq);
  }
  torch::Tensor freqs = positions.unsqueeze(-1) * inv_freq;  // (T, R/2), or (B, 1, T, R/2) packed
  torch::Tensor angles = torch::cat({freqs, freqs}, -1);     // (T, R), or (B, 1, T, R)
  torch::Tensor cos = angles.cos(), sin = angles.sin();
  if (rotary.attention_factor != 1.0) cos = cos * rotary.attention_factor, sin = sin * rotary.attention_factor;
  return {cos.to(x.scalar_type()), sin.to(x.scalar_type())};
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t R = cos.size(-1), D = x.size(-1);
  if (R < D) {  // partial rotation: the first R features turn, the rest pass (transformers' Phi-3)
    return torch::cat({apply_rope(x.narrow(-1, 0, R), cos, sin), x.narrow(-1, R, D - R)}, -1);  // (B, H, T, D)
  }
  // Packed rows have angles per row, (B, 1, T, D), which the fused kernel (one (T, D) table) does
  // not take: the composite computes the same.
  if (cos.dim() == 4) return kernels::rotary_reference(x, cos, sin);
  return kernels::rotary(x, cos, sin);  // one fused pass each way (kernels/rotary.h), in x's dtype
}

}  // namespace lofi::model
