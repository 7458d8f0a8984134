#include "lofi/train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/weights.h"

namespace lofi::train {

CheckpointPaths checkpoint_paths(const std::string& node_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%06lld", static_cast<long long>(step));
  std::string base = node_dir + "/ckpt/" + name;
  return {step, base + ".safetensors", base + ".optim.safetensors"};
}

std::vector<CheckpointPaths> list_checkpoints(const std::string& node_dir) {
  std::vector<CheckpointPaths> found;
  std::error_code ec;
  const std::regex pattern("step-([0-9]+)\\.safetensors");
  for (const auto& entry : std::filesystem::directory_iterator(node_dir + "/ckpt", ec)) {
    std::smatch m;
    std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, pattern)) found.push_back(checkpoint_paths(node_dir, std::stoll(m[1].str())));
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return found;
}

std::optional<CheckpointPaths> latest_checkpoint(const std::string& node_dir) {
  auto all = list_checkpoints(node_dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

void verify_checkpoint(const CheckpointPaths& paths) {
  for (const auto& path : {paths.optimizer, paths.weights}) {
    io::SafetensorsFile file(path);  // throws on a missing, truncated or malformed file
    file.verify_data_checksum();
  }
}

std::optional<CheckpointPaths> newest_valid_checkpoint(const std::string& node_dir, bool verbose) {
  auto all = list_checkpoints(node_dir);
  std::string damaged;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      verify_checkpoint(*it);
      if (verbose && it != all.rbegin())
        std::printf("resume: falling back to the newest checkpoint that verifies, step %lld\n", static_cast<long long>(it->step));
      return *it;
    } catch (const Error& e) {
      if (verbose) std::printf("resume: checkpoint of step %lld is unusable: %s\n", static_cast<long long>(it->step), e.what());
      damaged += std::string(damaged.empty() ? "" : "; ") + e.what();
    }
  }
  if (!all.empty()) fail("--resume: no checkpoint in ", node_dir, "/ckpt verifies (", damaged, "); start over with --overwrite");
  return std::nullopt;
}

std::string checkpoint_config(const CheckpointPaths& paths) {
  io::SafetensorsFile weights(paths.weights);
  auto it = weights.metadata().find("lofi.config");
  return it == weights.metadata().end() ? "" : it->second;
}

void remove_checkpoints(const std::string& node_dir) {
  std::error_code ec;
  std::filesystem::remove_all(node_dir + "/ckpt", ec);
  if (ec) fail(node_dir, "/ckpt: cannot remove old checkpoints: ", ec.message());
}

void prune_checkpoints(const std::string& node_dir, int64_t keep) {
  if (keep <= 0) return;
  auto all = list_checkpoints(node_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    std::filesystem::remove(all[i].weights, ec);  // the weights first: what remains is incomplete, never listed
    std::filesystem::remove(all[i].optimizer, ec);
  }
}

void save_checkpoint(const std::string& node_dir, int64_t step, const torch::nn::Module& module,
                     const Optimizer& optimizer, const std::string& config_toml, const OuterOptimizer* outer) {
  io::make_dirs(node_dir + "/ckpt");
  CheckpointPaths paths = checkpoint_paths(node_dir, step);
  io::Metadata optim_meta{{"step", std::to_string(step)}};
  io::NamedTensors state = optimizer.state(optim_meta);
  if (outer)
    for (auto& t : outer->state()) state.push_back(std::move(t));
  io::save_safetensors(paths.optimizer, state, optim_meta, /*checksum=*/true);
  io::save_safetensors(paths.weights, model::module_weights(module),
                       {{"step", std::to_string(step)}, {"lofi.config", config_toml}}, /*checksum=*/true);
}

int64_t load_checkpoint(const CheckpointPaths& paths, torch::nn::Module& module, Optimizer& optimizer,
                        OuterOptimizer* outer) {
  io::SafetensorsFile weights(paths.weights);
  model::load_module_weights(module, weights);
  io::SafetensorsFile optim(paths.optimizer);
  optimizer.load_state(optim);
  if (outer) outer->load_state(optim);
  return paths.step;
}

}  // namespace lofi::train
