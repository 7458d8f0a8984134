#include "lofi/train/checkpoint.h"

#include <cstdio>
#include <filesystem>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/lora.h"
#include "lofi/model/weights.h"

namespace lofi::train {

void verify_checkpoint(const run::Checkpoint& paths) {
  for (const auto& path : {paths.optimizer, paths.weights}) {
    io::SafetensorsFile file(path);  // throws on a missing, truncated or malformed file
    file.verify_data_checksum();
  }
}

std::optional<run::Checkpoint> newest_valid_checkpoint(const run::NodeDir& node, bool verbose) {
  auto all = node.checkpoints();
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
  if (!all.empty()) fail("--resume: no checkpoint in ", node.checkpoint_dir(), " verifies (", damaged, "); start over with --overwrite");
  return std::nullopt;
}

std::string checkpoint_config(const run::Checkpoint& paths) {
  io::SafetensorsFile weights(paths.weights);
  auto it = weights.metadata().find("lofi.config");
  return it == weights.metadata().end() ? "" : it->second;
}

std::string checkpoint_data(const run::Checkpoint& paths) {
  io::SafetensorsFile weights(paths.weights);
  auto it = weights.metadata().find("lofi.data");
  return it == weights.metadata().end() ? "" : it->second;
}

io::NamedTensors checkpoint_weights(const torch::nn::Module& module) {
  return model::has_frozen_weights(module) ? model::trainable_weights(module) : model::module_weights(module);
}

void load_checkpoint_weights(torch::nn::Module& module, const io::SafetensorsFile& file) {
  if (model::has_frozen_weights(module)) model::load_trainable_weights(module, file);
  else model::load_module_weights(module, file);
}

void prune_checkpoints(const run::NodeDir& node, int64_t keep) {
  if (keep <= 0) return;
  auto all = node.checkpoints();
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    std::filesystem::remove(all[i].weights, ec);  // the weights first: what remains is incomplete, never listed
    std::filesystem::remove(all[i].optimizer, ec);
  }
}

OptimizerState optimizer_state(const Optimizer& optimizer, dist::GradientSync& sync, bool keep) {
  OptimizerState state;
  if (!optimizer.sharded()) {
    if (keep) state.tensors = optimizer.state(state.metadata);
    return state;
  }
  const auto& params = optimizer.params();
  for (const std::string which : {"exp_avg", "exp_avg_sq"})
    sync.gather(optimizer.piece_state(which), [&](size_t k, const torch::Tensor& flat) {
      if (keep) state.tensors.emplace_back(params[k].name + "." + which, flat.reshape(params[k].param.sizes()).to(torch::kCPU, false, true));
    });
  if (!keep) return state;
  // Every piece of a sharded node is updated at every step: one count for all.
  const std::string steps = std::to_string(optimizer.steps_taken());
  for (const auto& p : params) state.metadata[p.name + ".step"] = steps;
  return state;
}

io::NamedTensors gathered_weights(const torch::nn::Module& module, const Optimizer& optimizer, dist::GradientSync& sync,
                                  bool keep) {
  const bool gather = optimizer.sharded() && (sync.shards_params() || optimizer.keeps_masters());
  if (!gather && !keep) return {};
  std::map<std::string, torch::Tensor> exact;  // parameter name -> its master (or whole) values
  if (gather) {
    const auto& params = optimizer.params();
    sync.gather(optimizer.piece_values(), [&](size_t k, const torch::Tensor& flat) {
      if (keep) exact[params[k].name] = flat.reshape(params[k].param.sizes()).to(torch::kCPU, false, true);
    });
    if (!keep) return {};
  } else if (optimizer.keeps_masters()) {
    for (auto& [name, master] : optimizer.masters()) exact[name] = master;
  }
  io::NamedTensors out = checkpoint_weights(module);  // a fully sharded node's block parameters are freed: not read
  for (auto& [name, tensor] : out)
    if (auto it = exact.find(name); it != exact.end()) tensor = std::move(it->second);
  return out;
}

void save_checkpoint(const run::NodeDir& node, int64_t step, const io::NamedTensors& weights,
                     OptimizerState optimizer, const std::string& config_toml, const std::string& data,
                     const OuterOptimizer* outer) {
  io::make_dirs(node.checkpoint_dir());
  const run::Checkpoint paths = node.checkpoint(step);
  io::Metadata optim_meta = std::move(optimizer.metadata);
  optim_meta["step"] = std::to_string(step);
  io::NamedTensors state = std::move(optimizer.tensors);
  if (outer)
    for (auto& t : outer->state()) state.push_back(std::move(t));
  io::save_safetensors(paths.optimizer, state, optim_meta, /*checksum=*/true);
  io::save_safetensors(paths.weights, weights,
                       {{"step", std::to_string(step)}, {"lofi.config", config_toml}, {"lofi.data", data}}, /*checksum=*/true);
}

int64_t load_checkpoint(const run::Checkpoint& paths, torch::nn::Module& module, Optimizer& optimizer,
                        OuterOptimizer* outer) {
  io::SafetensorsFile weights(paths.weights);
  load_checkpoint_weights(module, weights);
  io::SafetensorsFile optim(paths.optimizer);
  optimizer.load_state(optim);
  if (outer) outer->load_state(optim);
  return paths.step;
}

}  // namespace lofi::train
