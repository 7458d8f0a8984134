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
                        const std::vector<std::string>& ignored, const std::function<void(const std::string&)>& copied,
                        DeferredWeights* deferred) {
  copy_named_tensors(module_weights(module), tensors, source, ignored, copied, deferred);
}

void copy_named_tensors(const io::NamedTensors& targets, const io::NamedTensors& tensors, const std::string& source,
                        const std::vector<std::string>& ignored, const std::function<void(const std::string&)>& copied,
                        DeferredWeights* deferred) {
  torch::NoGradGuard no_grad;
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : tensors) by_name[name] = &t;
  for (auto [name, target] : targets) {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail(source, ": missing tensor '", name, "' (shape ", target.sizes(), ")");
    if (it->second->sizes() != target.sizes())
      fail(source, ": tensor '", name, "' has shape ", it->second->sizes(), ", the model expects ", target.sizes());
    if (target.is_meta()) {
      if (!deferred) fail("internal: ", source, ": tensor '", name, "' has no memory to load into");
      deferred->defer(target, name, [from = *it->second, copied, name = name](const torch::Tensor& into) {
        into.copy_(from);
        if (copied) copied(name);
      });
    } else {
      target.copy_(*it->second);
      if (copied) copied(name);
    }
    by_name.erase(it);
  }
  for (const auto& [name, t] : by_name)
    if (std::find(ignored.begin(), ignored.end(), name) == ignored.end())
      fail(source, ": unexpected tensor '", name, "' (not a parameter of this model; wrong architecture or size?)");
}

void load_module_weights(torch::nn::Module& module, const io::SafetensorsFile& file,
                         const std::vector<std::string>& ignored) {
  file.verify_data_checksum();  // a lofi output (a node's final, a merge) damaged since it was written
  // FILE outlives this call, which defers nothing: a handle that does not own it.
  load_module_weights(module, std::shared_ptr<const io::SafetensorsFile>(&file, [](const io::SafetensorsFile*) {}), ignored,
                      nullptr);
}

void load_module_weights(torch::nn::Module& module, std::shared_ptr<const io::SafetensorsFile> file,
                         const std::vector<std::string>& ignored, DeferredWeights* deferred) {
  io::NamedTensors views;
  for (const auto& e : file->entries()) views.emplace_back(e.name, file->view(e));
  const io::SafetensorsFile* f = file.get();  // alive: DEFERRED keeps it
  load_named_tensors(module, views, f->path(), ignored, [f](const std::string& name) {
    if (const io::TensorEntry* e = f->find(name)) f->release(*e);
  }, deferred);
  if (deferred) deferred->keep(std::move(file));
}

void materialize_parameters(torch::nn::Module& module, torch::Device device, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.numel() > 0 && p.storage().nbytes() == 0) p.set_data(torch::empty(p.sizes(), p.options().device(device).dtype(dtype)));
}

}  // namespace lofi::model
