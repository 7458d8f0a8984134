#include "lofi/model/lora.h"

#include <map>
#include <set>

#include "lofi/error.h"
#include "lofi/model/linear.h"
#include "lofi/model/weights.h"
#include "lofi/strings.h"

namespace lofi::model {

io::LoraSpec LoraConfig::spec(const std::string& base) const {
  io::LoraSpec s;
  s.r = rank;
  s.alpha = alpha;
  s.rslora = rslora;
  s.dropout = dropout;
  s.target_modules = io::split_names(target);
  s.modules_to_save = io::split_names(modules_to_save);
  s.base_model = base;
  return s;
}

namespace {

// MODULE as a linear layer LoRA may adapt, or null.
AdaptableLinearImpl* adaptable_layer(const std::shared_ptr<torch::nn::Module>& module) {
  auto* layer = dynamic_cast<AdaptableLinearImpl*>(module.get());
  return layer && layer->adaptable ? layer : nullptr;
}

std::string layer_list(const torch::nn::Module& module) {
  // The distinct last components, as users write targets: "q_proj, k_proj, ...".
  std::vector<std::string> seen;
  for (const auto& name : linear_layer_names(module)) {
    const std::string last = name.substr(name.rfind('.') + 1);
    if (std::find(seen.begin(), seen.end(), last) == seen.end()) seen.push_back(last);
  }
  std::string out;
  for (const auto& s : seen) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "none" : out;
}

// The layer of MODULE called NAME, or null.
AdaptableLinearImpl* layer_named(torch::nn::Module& module, const std::string& name) {
  for (const auto& item : module.named_modules(/*name_prefix=*/"", /*include_self=*/false))
    if (item.key() == name) return adaptable_layer(item.value());
  return nullptr;
}

void unfreeze_saved_modules(torch::nn::Module& module, const std::vector<std::string>& names, const char* source) {
  for (const auto& m : names) {
    bool hit = false;
    for (const auto& item : module.named_modules("", /*include_self=*/false))
      if (io::peft_name_matches(item.key(), m)) {
        hit = true;
        for (auto& p : item.value()->parameters()) p.set_requires_grad(true);
      }
    if (!hit) fail(source, " \"", m, "\" names no module of this model (e.g. \"head\" of a ViT, \"lm_head\" of an untied decoder)");
  }
}


}  // namespace

std::vector<std::string> linear_layer_names(const torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& item : module.named_modules("", /*include_self=*/false))
    if (adaptable_layer(item.value())) names.push_back(item.key());
  return names;
}

std::vector<std::string> apply_lora(torch::nn::Module& module, const io::LoraSpec& spec, uint64_t seed) {
  if (spec.r <= 0) fail("lora.rank must be >= 1 for adapters, found ", spec.r);
  if (spec.target_modules.empty()) fail("lora.target is empty: name the layers to adapt (", layer_list(module), ") or \"all-linear\"");
  for (auto& p : module.parameters()) p.set_requires_grad(false);
  // A from one CPU stream in layer order, so every node and device draws the same factors.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<std::string> adapted;
  std::set<std::string> used;
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    auto* layer = adaptable_layer(item.value());
    if (!layer) continue;
    bool hit = false;
    for (const auto& t : spec.target_modules)
      if (t == "all-linear" || io::peft_name_matches(item.key(), t)) hit = true, used.insert(t);
    if (!hit) continue;
    layer->attach_lora(spec.r, spec.scaling(), spec.dropout);
    torch::NoGradGuard no_grad;
    // PEFT's init: kaiming_uniform_(a = sqrt(5)) on A (r, in): bound 1 / sqrt(in); B zero.
    const double bound = 1.0 / std::sqrt(static_cast<double>(layer->in_features()));
    torch::Tensor a = torch::empty({spec.r, layer->in_features()}).uniform_(-bound, bound, gen);
    layer->lora_A->weight.copy_(a);
    layer->lora_B->weight.zero_();
    adapted.push_back(item.key());
  }
  for (const auto& t : spec.target_modules)
    if (!used.count(t))
      fail("lora.target \"", t, "\" matches no linear layer of this model; its linear layers are ", layer_list(module),
           " (or give \"all-linear\")");
  unfreeze_saved_modules(module, spec.modules_to_save, "lora.modules_to_save");
  return adapted;
}

bool lora_fan_in_fan_out(const torch::nn::Module& module) {
  for (const auto& item : module.named_modules("", /*include_self=*/false))
    if (auto* layer = dynamic_cast<AdaptableLinearImpl*>(item.value().get()); layer && layer->has_lora() && layer->fan_in_fan_out())
      return true;
  return false;
}

void train_loaded_lora(torch::nn::Module& module, const io::LoraSpec& spec) {
  bool any = false;
  for (const auto& item : module.named_parameters()) {
    const bool adapter = io::is_lora_factor(item.key());
    item.value().set_requires_grad(adapter);
    any |= adapter;
  }
  if (!any) fail("the model carries no LoRA adapters to train further");
  for (const auto& item : module.named_modules("", /*include_self=*/false))
    if (auto* layer = dynamic_cast<AdaptableLinearImpl*>(item.value().get()); layer && layer->has_lora())
      layer->lora_dropout = spec.dropout;
  unfreeze_saved_modules(module, spec.modules_to_save, "the adapter's modules_to_save");
}

io::NamedTensors base_weights(const torch::nn::Module& module) {
  io::NamedTensors out;
  for (const auto& item : module.named_parameters())
    if (!io::is_lora_factor(item.key())) out.emplace_back(item.key(), item.value().detach());
  for (const auto& item : module.named_buffers()) out.emplace_back(item.key(), item.value().detach());
  return out;
}

void load_lora_adapter(torch::nn::Module& module, const io::LoraAdapter& adapter) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> params;
  for (const auto& item : module.named_parameters()) params[item.key()] = item.value();
  // The adapters first: lora_A names the layer and gives the rank.
  std::set<std::string> done;
  const std::string suffix_a = io::kLoraASuffix, suffix_b = io::kLoraBSuffix;
  std::map<std::string, torch::Tensor> by_name(adapter.tensors.begin(), adapter.tensors.end());
  for (const auto& [name, a] : adapter.tensors) {
    if (!ends_with(name, suffix_a)) continue;
    const std::string layer_name = name.substr(0, name.size() - suffix_a.size());
    AdaptableLinearImpl* layer = layer_named(module, layer_name);
    if (!layer)
      fail(adapter.source, ": tensor '", name, "' adapts '", layer_name, "', which is no linear layer of this model ",
           "(an adapter of another base?); its linear layers are ", layer_list(module));
    auto b = by_name.find(layer_name + suffix_b);
    if (b == by_name.end()) fail(adapter.source, ": '", name, "' has no '", layer_name, suffix_b, "'");
    if (a.dim() != 2 || b->second.dim() != 2 || a.size(1) != layer->in_features() || b->second.size(0) != layer->out_features() ||
        b->second.size(1) != a.size(0))
      fail(adapter.source, ": the adapter of '", layer_name, "' has A ", a.sizes(), " and B ", b->second.sizes(),
           "; the layer is ", layer->in_features(), " -> ", layer->out_features(), " (an adapter of another base?)");
    layer->attach_lora(a.size(0), adapter.spec.scaling(), adapter.spec.dropout);
    layer->lora_A->weight.set_requires_grad(false);
    layer->lora_B->weight.set_requires_grad(false);
    layer->lora_A->weight.copy_(a);
    layer->lora_B->weight.copy_(b->second);
    done.insert(name);
    done.insert(layer_name + suffix_b);
  }
  for (const auto& [name, t] : adapter.tensors) {
    if (done.count(name)) continue;
    auto it = params.find(name);
    if (it == params.end())
      fail(adapter.source, ": tensor '", name, "' is no parameter of this model (an adapter of another base?)");
    if (it->second.sizes() != t.sizes())
      fail(adapter.source, ": tensor '", name, "' has shape ", t.sizes(), ", the model's is ", it->second.sizes(),
           " (an adapter of another base?)");
    it->second.copy_(t);
  }
}

io::NamedTensors trainable_weights(const torch::nn::Module& module) {
  io::NamedTensors out;
  for (const auto& item : module.named_parameters())
    if (item.value().requires_grad()) out.emplace_back(item.key(), item.value().detach());
  return out;
}

void load_trainable_weights(torch::nn::Module& module, const io::SafetensorsFile& file) {
  io::NamedTensors views;
  for (const auto& e : file.entries()) views.emplace_back(e.name, file.view(e));
  copy_named_tensors(trainable_weights(module), views, file.path());
}

bool has_frozen_weights(const torch::nn::Module& module) {
  for (const auto& p : module.parameters())
    if (!p.requires_grad()) return true;
  return false;
}

void cast_frozen_weights(torch::nn::Module& module, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (!p.requires_grad() && p.scalar_type() != dtype) p.set_data(p.to(dtype));
}

void widen_trained_weights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.requires_grad() && p.scalar_type() != torch::kFloat) p.set_data(p.to(torch::kFloat));
}

io::NamedTensors merged_lora_weights(const torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> folded;  // "<layer>.weight" -> W + delta
  std::set<std::string> adapter_tensors;
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    auto* layer = dynamic_cast<AdaptableLinearImpl*>(item.value().get());
    if (!layer || !layer->has_lora()) continue;
    const torch::Tensor& w = layer->weight;
    folded[item.key() + ".weight"] =
        (w.to(torch::kFloat) + layer->to_storage_layout(layer->lora_delta().to(w.device()))).to(w.scalar_type());
    adapter_tensors.insert(item.key() + io::kLoraASuffix);
    adapter_tensors.insert(item.key() + io::kLoraBSuffix);
  }
  io::NamedTensors out;
  for (const auto& item : module.named_parameters()) {
    if (adapter_tensors.count(item.key())) continue;
    auto it = folded.find(item.key());
    out.emplace_back(item.key(), it != folded.end() ? it->second : item.value().detach());
  }
  for (const auto& item : module.named_buffers()) out.emplace_back(item.key(), item.value().detach());
  return out;
}

}  // namespace lofi::model
