// When a task builds its model in pieces (model/deferred_weights.h): a fully sharded start of a
// full fine-tune. An adapter's base is not sharded, so a LoRA run (or a PEFT adapter as
// model.init) builds it whole.
#pragma once
#include <memory>

#include "lofi/io/lora_adapter.h"
#include "lofi/model/deferred_weights.h"
#include "lofi/train/config.h"
#include "lofi/train/task.h"

namespace lofi::family {

// The collector of the deferred weights where CONFIG builds in pieces on TOPO, else null.
inline std::unique_ptr<model::DeferredWeights> weights_built_in_pieces(const train::Config& config,
                                                                      const dist::Topology& topo) {
  if (!train::starts_sharded(config, topo) || config.lora.enabled() || io::is_lora_adapter(config.model.init)) return nullptr;
  return std::make_unique<model::DeferredWeights>();
}

}  // namespace lofi::family
