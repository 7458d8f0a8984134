#include "lofi/model/weights.h"

#include <algorithm>
#include <set>

#include "lofi/error.h"

namespace lofi::model {

io::NamedTensors module_weights(const torch::nn::Module& module) {
  io::NamedTensors out;
  for (const auto& item : module.named_parameters()) out.emplace_back(item.key(), item.value().detach());
  for (const auto& item : module.named_buffers()) out.emplace_back(item.key(), item.value().detach());
  return out;
}

void load_module_weights(torch::nn::Module& module, const io::SafetensorsFile& file,
                         const std::vector<std::string>& ignored) {
  torch::NoGradGuard no_grad;
  std::set<std::string> expected;
  for (auto& [name, target] : module_weights(module)) {
    expected.insert(name);
    const io::TensorEntry* entry = file.find(name);
    if (!entry) fail(file.path(), ": missing tensor '", name, "' (shape ", target.sizes(), ")");
    if (torch::IntArrayRef(entry->shape) != target.sizes())
      fail(file.path(), ": tensor '", name, "' has shape ", torch::IntArrayRef(entry->shape), ", the model expects ",
           target.sizes());
    target.copy_(file.load(*entry));
  }
  for (const auto& e : file.entries())
    if (!expected.count(e.name) && std::find(ignored.begin(), ignored.end(), e.name) == ignored.end())
      fail(file.path(), ": unexpected tensor '", e.name, "' (not a parameter of this model; wrong architecture or size?)");
}

}  // namespace lofi::model
