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
                        DeferredWeights* deferred, const MadeTensors& made) {
  copy_named_tensors(module_weights(module), tensors, source, ignored, copied, deferred, made);
}

void copy_named_tensors(const io::NamedTensors& targets, const io::NamedTensors& tensors, const std::string& source,
                        const std::vector<std::string>& ignored, const std::function<void(const std::string&)>& copied,
                        DeferredWeights* deferred, const MadeTensors& made) {
  torch::NoGradGuard no_grad;
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : tensors) by_name[name] = &t;
  std::map<std::string, const MadeTensor*> to_make;
  for (const auto& [name, m] : made) to_make[name] = &m;
  for (auto [name, target] : targets) {
    // Where the value comes from: a stored tensor as it is, or one made now.
    std::function<torch::Tensor()> value;
    std::vector<int64_t> shape;
    if (auto it = by_name.find(name); it != by_name.end()) {
      shape = it->second->sizes().vec();
      value = [stored = *it->second] { return stored; };  // a handle: a deferred fill outlives TENSORS
      by_name.erase(it);
    } else if (auto m = to_make.find(name); m != to_make.end()) {
      shape = m->second->shape;
      value = m->second->make;
      to_make.erase(m);
    } else {
      fail(source, ": missing tensor '", name, "' (shape ", target.sizes(), ")");
    }
    if (shape != target.sizes())
      fail(source, ": tensor '", name, "' has shape ", at::IntArrayRef(shape), ", the model expects ", target.sizes());
    if (target.is_meta()) {
      if (!deferred) fail("internal: ", source, ": tensor '", name, "' has no memory to load into");
      deferred->defer(target, name, [value, copied, name = name](const torch::Tensor& into) {
        into.copy_(value());
        if (copied) copied(name);
      });
    } else {
      target.copy_(value());
      if (copied) copied(name);
    }
  }
  auto refuse_extra = [&](const std::string& name) {
    if (std::find(ignored.begin(), ignored.end(), name) == ignored.end())
      fail(source, ": unexpected tensor '", name, "' (not a parameter of this model; wrong architecture or size?)");
  };
  for (const auto& [name, t] : by_name) refuse_extra(name);
  for (const auto& [name, m] : to_make) refuse_extra(name);
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
