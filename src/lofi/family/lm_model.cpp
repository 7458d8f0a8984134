#include "lofi/family/lm_model.h"

#include "lofi/io/safetensors.h"
#include "lofi/model/hf.h"
#include "lofi/model/weights.h"

namespace lofi::family {

model::CausalLm make_lm(const train::ModelConfig& config, uint64_t seed) {
  train::ModelConfig resolved = config;
  train::apply_hf_init(resolved);
  torch::manual_seed(seed);
  model::CausalLm lm = model::make_causal_lm(train::lm_config(resolved));
  // Every weight is loaded (a missing one is an error), so initialising them first would only
  // cost time.
  if (resolved.init.empty()) {
    model::init_causal_lm_weights(*lm);
  } else if (model::is_hf_model_dir(resolved.init)) {
    model::load_hf_weights(*lm, resolved.init);
  } else {
    io::SafetensorsFile init(resolved.init);
    model::load_module_weights(*lm, init, model::tied_copies(*lm));
  }
  return lm;
}

}  // namespace lofi::family
