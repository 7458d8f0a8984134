#include "lofi/model/lm_config.h"

#include <algorithm>

namespace lofi::model {

double LmConfig::parameter_bound() const {
  const double d = static_cast<double>(d_model), L = static_cast<double>(n_layer);
  const double head = static_cast<double>(head_dim > 0 ? head_dim : (n_head > 0 ? d_model / n_head : 0));
  const double attn = static_cast<double>(n_head) * head;
  const double experts = static_cast<double>(num_experts) * (3 * d * static_cast<double>(expert_width()) + d) +  // and the router
                         3 * d * static_cast<double>(shared_expert_d_ff) + d +                              // the shared one, its gate
                         static_cast<double>(num_experts) * (2 * static_cast<double>(expert_width()) + d + 1);  // gpt-oss's biases
  const double per_layer = 4 * d * std::max(d, attn) + 3 * d * static_cast<double>(d_ff) + 4 * (d + static_cast<double>(d_ff)) +
                           (qk_norm ? 2 * head : 0) + static_cast<double>(n_head) + experts;  // and gpt-oss's sinks
  return L * per_layer + outside_blocks_bound();
}

int64_t LmConfig::layer_window(int64_t layer) const {
  return sliding_window_pattern > 0 && (layer + 1) % sliding_window_pattern == 0 ? 0 : sliding_window;
}

bool LmConfig::layer_rotates(int64_t layer) const { return no_rope_interval <= 0 || (layer + 1) % no_rope_interval != 0; }

double LmConfig::outside_blocks_bound() const {
  const double d = static_cast<double>(d_model), V = static_cast<double>(vocab_size);
  const double embed = static_cast<double>(word_embed_proj_dim > 0 ? word_embed_proj_dim : d_model);
  return 2 * V * std::max(d, embed) + static_cast<double>(max_seq_len + 2) * d + 2 * d * embed;
}

}  // namespace lofi::model
