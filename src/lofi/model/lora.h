// LoRA on lofi's models: the [lora] section of a run config, adapters attached to the layers it
// targets (model/linear.h), the base frozen, and adapters read from and folded into a model. The
// rules are PEFT's: a target names a layer by its last name components ("q_proj" matches
// "model.layers.0.self_attn.q_proj"), "all-linear" takes every linear layer of the blocks but not
// the output head, modules_to_save are trained whole, A starts Kaiming-uniform and B at zero.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "lofi/io/lora_adapter.h"
#include "lofi/settings.h"

namespace lofi::model {

struct LoraConfig {
  int64_t rank = 0;
  double alpha = 16;
  double dropout = 0;
  std::string target = "all-linear";
  bool rslora = false;
  std::string modules_to_save;

  void declare(Settings& s) {
    s(rank, "rank", "LoRA's rank r; 0: no adapters, every weight trains (full fine-tuning)").at_least(0);
    s(alpha, "alpha", "lora_alpha: the adapter's output is scaled by alpha / rank (alpha / sqrt(rank) with rslora)")
        .above(0).applies(rank > 0);
    s(dropout, "dropout", "dropout on the adapter's input, as PEFT's lora_dropout").in(0, 1).applies(rank > 0);
    s(target, "target", "layers that get adapters, as PEFT's target_modules: names such as \"q_proj,v_proj\" (or a\n"
                        "TOML list), or \"all-linear\" (every linear layer of the blocks, not the output head)")
        .applies(rank > 0);
    s(rslora, "rslora", "rank-stabilised scaling alpha / sqrt(rank) (PEFT's use_rslora)").applies(rank > 0);
    s(modules_to_save, "modules_to_save", "modules trained whole beside the adapters, e.g. \"head\" for a new classifier")
        .applies(rank > 0);
  }
  bool enabled() const { return rank > 0; }
  // As PEFT's LoraConfig; BASE names the base model (base_model_name_or_path).
  io::LoraSpec spec(const std::string& base = "") const;
};

// The names of MODULE's linear layers that can take an adapter, in registration order.
std::vector<std::string> linear_layer_names(const torch::nn::Module& module);

// Attaches adapters of SPEC to MODULE's targeted layers, A drawn from SEED (Kaiming-uniform, as
// PEFT) and B zero, and freezes every other parameter except those of SPEC.modules_to_save.
// Returns the adapted layers' names. A target or module to save that matches nothing is an error
// listing the model's linear layers.
std::vector<std::string> apply_lora(torch::nn::Module& module, const io::LoraSpec& spec, uint64_t seed);

// Whether MODULE's adapted layers store their weights (in, out) (GPT-2's Conv1D): PEFT's fan_in_fan_out.
bool lora_fan_in_fan_out(const torch::nn::Module& module);

// Trains the adapters MODULE already carries (loaded by load_lora_adapter) further: every other
// parameter frozen, except those of SPEC.modules_to_save; the adapters' dropout set to SPEC's.
void train_loaded_lora(torch::nn::Module& module, const io::LoraSpec& spec);
// MODULE's weights without its adapters' own tensors (the base an adapter's checksum describes).
io::NamedTensors base_weights(const torch::nn::Module& module);

// Loads ADAPTER into MODULE (the base it was trained on): attaches adapters of the adapter's rank
// and scaling to its layers, copies them and the saved modules. A tensor that names no layer of
// MODULE, or a shape that differs, is an error naming the tensor and the adapter.
void load_lora_adapter(torch::nn::Module& module, const io::LoraAdapter& adapter);

// The tensors that train (requires_grad), detached: a LoRA run's adapters and saved modules, or
// every parameter of a full fine-tune.
io::NamedTensors trainable_weights(const torch::nn::Module& module);
// Copies every trainable tensor of MODULE from FILE; a missing, extra or misshapen one is an error.
void load_trainable_weights(torch::nn::Module& module, const io::SafetensorsFile& file);
// Whether any parameter of MODULE is frozen.
bool has_frozen_weights(const torch::nn::Module& module);
// The frozen parameters of MODULE converted to DTYPE (a bf16 base under fp32 adapters).
void cast_frozen_weights(torch::nn::Module& module, torch::Dtype dtype);
// The trainable parameters of MODULE in fp32 (what AdamW updates), whatever they were made in.
void widen_trained_weights(torch::nn::Module& module);

// MODULE's weights with every adapter folded into its layer (W + scaling B A, in W's dtype) and
// the adapters' own tensors left out: the dense model, as PEFT's merge_and_unload gives it.
io::NamedTensors merged_lora_weights(const torch::nn::Module& module);

}  // namespace lofi::model
