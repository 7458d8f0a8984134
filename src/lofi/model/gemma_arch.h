// What Gemma 2 and Gemma 3's text decoder share as architectures (archs/gemma2.cpp,
// archs/gemma3_text.cpp): both build model/gemma3.h's modules (transformers derives Gemma 3's from
// Gemma 2's), read the same config.json keys for their heads, attention scale, soft-capping and
// layer kinds, and are checked alike. Each says what differs: its name, class, defaults, query/key
// norms and rotation.
#pragma once
#include "lofi/model/arch.h"

namespace lofi::model {

// Activation, heads, query_pre_attn_scalar (default QUERY_PRE_ATTN_SCALAR), biases, the two
// soft-capping keys (absent: SOFTCAP_ATTENTION and SOFTCAP_LOGITS; null: none), sliding_window
// (absent: 4096) and the layer kinds (layer_types, else sliding_window_pattern, absent:
// DEFAULT_PATTERN); bidirectional attention refused.
void read_gemma_keys(const HfKeys& keys, LmConfig& c, double query_pre_attn_scalar, double softcap_attention,
                     double softcap_logits, int64_t default_pattern);
// The same keys as transformers writes them, layer_types included.
void write_gemma_keys(const LmConfig& c, nlohmann::ordered_json& out);
// What both need; ARCH's query/key norms (LmConfig::qk_norm) are QK_NORM.
void check_gemma(const LmConfig& c, const std::string& source, bool qk_norm);

}  // namespace lofi::model
