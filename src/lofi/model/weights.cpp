#include "lofi/model/weights.h"

#include <algorithm>
#include <map>

#include "lofi/error.h"

namespace lofi::model {

io::NamedTensors module_weights(const torch::nn::Module& module) {
  io::NamedTensors out;
  for (const auto& item : module.named_parameters()) out.emplace_back(item.key(), item.value().detach());
  for (const auto& item : module.named_buffers()) out.emplace_back(item.key(), item.value().detach());
  return out;
}

void load_named_tensors(torch::nn::Module& module, const io::NamedTensors& tensors, const std::string& source,
                        const std::vector<std::string>& ignored, const std::function<void(const std::string&)>& copied) {
  copy_named_tensors(module_weights(module), tensors, source, ignored, copied);
}

void copy_named_tensors(const io::NamedTensors& targets, const io::NamedTensors& tensors, const std::string& source,
                        const std::vector<std::string>& ignored, const std::function<void(const std::string&)>& copied) {
  torch::NoGradGuard no_grad;
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : tensors) by_name[name] = &t;
  for (auto [name, target] : targets) {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail(source, ": missing tensor '", name, "' (shape ", target.sizes(), ")");
    if (it->second->sizes() != target.sizes())
      fail(source, ": tensor '", name, "' has shape ", it->second->sizes(), ", the model expects ", target.sizes());
    target.copy_(*it->second);
    if (copied) copied(name);
    by_name.erase(it);
  }
  for (const auto& [name, t] : by_name)
    if (std::find(ignored.begin(), ignored.end(), name) == ignored.end())
      fail(source, ": unexpected tensor '", name, "' (not a parameter of this model; wrong architecture or size?)");
}

void load_module_weights(torch::nn::Module& module, const io::SafetensorsFile& file,
                         const std::vector<std::string>& ignored) {
  io::NamedTensors views;
  for (const auto& e : file.entries()) views.emplace_back(e.name, file.view(e));
  load_named_tensors(module, views, file.path(), ignored, [&](const std::string& name) {
    if (const io::TensorEntry* e = file.find(name)) file.release(*e);
  });
}

void materialize_parameters(torch::nn::Module& module, torch::Device device, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.numel() > 0 && p.storage().nbytes() == 0) p.set_data(torch::empty(p.sizes(), p.options().device(device).dtype(dtype)));
}

}  // namespace lofi::model
