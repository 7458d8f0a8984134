#include "lofi/train/optimizer.h"

#include "lofi/error.h"

namespace lofi::train {
namespace {

// LibTorch keys optimizer state by the parameter's TensorImpl address, as a string.
std::string state_key(const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

}  // namespace

Optimizer::Optimizer(const torch::nn::Module& module, const TrainConfig& c) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& item : module.named_parameters()) {
    params_.push_back({item.key(), item.value()});
    (item.value().dim() >= 2 ? decay : no_decay).push_back(item.value());
  }
  auto options = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, options(c.weight_decay));
  groups.emplace_back(no_decay, options(0.0));
  adamw_ = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(c.lr));
}

void Optimizer::set_lr(double lr) {
  for (auto& group : adamw_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

io::NamedTensors Optimizer::state(io::Metadata& metadata) const {
  io::NamedTensors out;
  auto& states = adamw_->state();
  for (const auto& [name, p] : params_) {
    auto it = states.find(state_key(p));
    if (it == states.end()) continue;  // never stepped
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    out.emplace_back(name + ".exp_avg", s.exp_avg());
    out.emplace_back(name + ".exp_avg_sq", s.exp_avg_sq());
    metadata[name + ".step"] = std::to_string(s.step());
  }
  return out;
}

void Optimizer::load_state(const io::SafetensorsFile& file) {
  auto& states = adamw_->state();
  states.clear();
  for (const auto& [name, p] : params_) {
    auto step = file.metadata().find(name + ".step");
    if (step == file.metadata().end()) fail(file.path(), ": no optimizer state for parameter '", name, "'");
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(std::stoll(step->second));
    for (const char* part : {".exp_avg", ".exp_avg_sq"}) {
      torch::Tensor t = file.load(name + part);
      if (t.sizes() != p.sizes())
        fail(file.path(), ": optimizer tensor '", name, part, "' has shape ", t.sizes(), ", expected ", p.sizes());
      (std::string(part) == ".exp_avg" ? s->exp_avg(t) : s->exp_avg_sq(t));
    }
    states[state_key(p)] = std::move(s);
  }
}

}  // namespace lofi::train
