#include "lofi/train/checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <regex>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/model/weights.h"

namespace lofi::train {

CheckpointPaths checkpoint_paths(const std::string& node_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%06lld", static_cast<long long>(step));
  std::string base = node_dir + "/ckpt/" + name;
  return {step, base + ".safetensors", base + ".optim.safetensors"};
}

std::optional<CheckpointPaths> latest_checkpoint(const std::string& node_dir) {
  std::optional<CheckpointPaths> best;
  std::error_code ec;
  const std::regex pattern("step-([0-9]+)\\.safetensors");
  for (const auto& entry : std::filesystem::directory_iterator(node_dir + "/ckpt", ec)) {
    std::smatch m;
    std::string name = entry.path().filename().string();
    if (!std::regex_match(name, m, pattern)) continue;
    int64_t step = std::stoll(m[1].str());
    if (!best || step > best->step) best = checkpoint_paths(node_dir, step);
  }
  return best;
}

void remove_checkpoints(const std::string& node_dir) {
  std::error_code ec;
  std::filesystem::remove_all(node_dir + "/ckpt", ec);
  if (ec) fail(node_dir, "/ckpt: cannot remove old checkpoints: ", ec.message());
}

void save_checkpoint(const std::string& node_dir, int64_t step, const torch::nn::Module& module,
                     const Optimizer& optimizer) {
  io::make_dirs(node_dir + "/ckpt");
  CheckpointPaths paths = checkpoint_paths(node_dir, step);
  io::Metadata optim_meta{{"step", std::to_string(step)}};
  io::NamedTensors state = optimizer.state(optim_meta);
  io::save_safetensors(paths.optimizer, state, optim_meta);
  io::save_safetensors(paths.weights, model::module_weights(module), {{"step", std::to_string(step)}});
}

int64_t load_checkpoint(const CheckpointPaths& paths, torch::nn::Module& module, Optimizer& optimizer) {
  io::SafetensorsFile weights(paths.weights);
  model::load_module_weights(module, weights);
  io::SafetensorsFile optim(paths.optimizer);
  optimizer.load_state(optim);
  return paths.step;
}

}  // namespace lofi::train
