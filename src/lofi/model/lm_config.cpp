#include "lofi/model/lm_config.h"

#include <algorithm>

namespace lofi::model {

double LmConfig::parameter_bound() const {
  const double d = static_cast<double>(d_model), L = static_cast<double>(n_layer), V = static_cast<double>(vocab_size);
  const double attn = static_cast<double>(n_head) * static_cast<double>(head_dim > 0 ? head_dim : (n_head > 0 ? d_model / n_head : 0));
  const double per_layer = 4 * d * std::max(d, attn) + 3 * d * static_cast<double>(d_ff) + 4 * (d + static_cast<double>(d_ff));
  const double embed = static_cast<double>(word_embed_proj_dim > 0 ? word_embed_proj_dim : d_model);
  return L * per_layer + 2 * V * std::max(d, embed) + static_cast<double>(max_seq_len + 2) * d + 2 * d * embed;
}

const std::vector<LmConfigKey>& lm_config_keys() {
  static const std::vector<LmConfigKey> keys{
      {"arch", &LmConfig::arch},
      {"n_layer", &LmConfig::n_layer},
      {"n_head", &LmConfig::n_head},
      {"d_model", &LmConfig::d_model},
      {"d_ff", &LmConfig::d_ff},
      {"vocab_size", &LmConfig::vocab_size},
      {"max_seq_len", &LmConfig::max_seq_len},
      {"activation", &LmConfig::activation},
      {"dropout", &LmConfig::dropout},
      {"attention_dropout", &LmConfig::attention_dropout},
      {"embedding_dropout", &LmConfig::embedding_dropout},
      {"layer_norm_eps", &LmConfig::layer_norm_eps},
      {"do_layer_norm_before", &LmConfig::do_layer_norm_before},
      {"word_embed_proj_dim", &LmConfig::word_embed_proj_dim},
      {"tie_word_embeddings", &LmConfig::tie_word_embeddings},
      {"n_kv_head", &LmConfig::n_kv_head},
      {"head_dim", &LmConfig::head_dim},
      {"rope_theta", &LmConfig::rope_theta},
      {"rope_scaling", &LmConfig::rope_scaling},
      {"rope_factor", &LmConfig::rope_factor},
      {"rope_low_freq_factor", &LmConfig::rope_low_freq_factor},
      {"rope_high_freq_factor", &LmConfig::rope_high_freq_factor},
      {"rope_original_max_positions", &LmConfig::rope_original_max_positions},
      {"attention_bias", &LmConfig::attention_bias},
      {"attention_out_bias", &LmConfig::attention_out_bias},
      {"mlp_bias", &LmConfig::mlp_bias},
      {"sliding_window", &LmConfig::sliding_window},
  };
  return keys;
}

}  // namespace lofi::model
