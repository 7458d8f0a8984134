#include "lofi/train/optimizer.h"

#include <optional>

#include "lofi/error.h"

namespace lofi::train {

Optimizer::Optimizer(const torch::nn::Module& module, const TrainConfig& c) : config_(c), lr_(c.lr) {
  for (const auto& item : module.named_parameters()) {
    if (!item.value().requires_grad()) continue;  // frozen (a LoRA run's base): no state, no update
    params_.push_back({item.key(), item.value()});
    slots_.push_back({});
    slots_.back().decay = item.value().dim() >= 2;
  }
}

namespace {

std::vector<torch::Tensor> defined_grads(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  return grads;
}

torch::Tensor total_norm(const std::vector<torch::Tensor>& grads) {
  return torch::linalg_vector_norm(torch::stack(torch::_foreach_norm(grads, 2)), 2);  // ()
}

}  // namespace

torch::Tensor grad_norm(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> grads = defined_grads(params);
  return grads.empty() ? torch::zeros({}) : total_norm(grads);
}

torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads = defined_grads(params);
  if (grads.empty()) return torch::zeros({});
  torch::Tensor total = total_norm(grads);
  torch::Tensor coef = torch::clamp(max_norm / (total + 1e-6), /*min=*/c10::nullopt, /*max=*/1.0);
  torch::_foreach_mul_(grads, coef);
  return total;
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.param.mutable_grad().reset();
}

void Optimizer::step(const torch::Tensor& found_inf) {
  torch::NoGradGuard no_grad;
  // The kernel takes lists of one dtype and device: weight-decayed and plain groups apart.
  for (bool decay : {true, false}) {
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    for (size_t k = 0; k < params_.size(); ++k) {
      const torch::Tensor& p = params_[k].param;
      if (slots_[k].decay != decay || !p.grad().defined()) continue;
      Slot& s = slots_[k];
      if (!s.step.defined()) {
        s.exp_avg = torch::zeros_like(p, torch::MemoryFormat::Preserve);
        s.exp_avg_sq = torch::zeros_like(p, torch::MemoryFormat::Preserve);
        s.step = torch::zeros({}, p.options().dtype(torch::kFloat32));
      }
      params.push_back(p), grads.push_back(p.grad()), exp_avgs.push_back(s.exp_avg);
      exp_avg_sqs.push_back(s.exp_avg_sq), steps.push_back(s.step);
    }
    if (params.empty()) continue;
    torch::_foreach_add_(steps, 1);  // the kernel reads the step after this update's increment
    const std::optional<torch::Tensor> skip = found_inf.defined() ? std::optional<torch::Tensor>(found_inf) : std::nullopt;
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr_, config_.beta1,
                      config_.beta2, decay ? config_.weight_decay : 0.0, config_.eps, /*amsgrad=*/false,
                      /*maximize=*/false, /*grad_scale=*/std::nullopt, skip);
    // A skipped update leaves the step counts where they were, as PyTorch's _fused_adamw does.
    if (skip) torch::_foreach_sub_(steps, std::vector<torch::Tensor>(steps.size(), found_inf));
  }
}

io::NamedTensors Optimizer::state(io::Metadata& metadata) const {
  io::NamedTensors out;
  for (size_t k = 0; k < params_.size(); ++k) {
    const Slot& s = slots_[k];
    if (!s.step.defined()) continue;  // never stepped
    out.emplace_back(params_[k].name + ".exp_avg", s.exp_avg);
    out.emplace_back(params_[k].name + ".exp_avg_sq", s.exp_avg_sq);
    metadata[params_[k].name + ".step"] = std::to_string(static_cast<int64_t>(s.step.item<float>()));
  }
  return out;
}

void Optimizer::load_state(const io::SafetensorsFile& file) {
  for (size_t k = 0; k < params_.size(); ++k) {
    const auto& [name, p] = params_[k];
    auto step = file.metadata().find(name + ".step");
    if (step == file.metadata().end()) fail(file.path(), ": no optimizer state for parameter '", name, "'");
    Slot& s = slots_[k];
    for (const char* part : {".exp_avg", ".exp_avg_sq"}) {
      torch::Tensor t = file.load(name + part);
      if (t.sizes() != p.sizes())
        fail(file.path(), ": optimizer tensor '", name, part, "' has shape ", t.sizes(), ", expected ", p.sizes());
      if (t.scalar_type() != p.scalar_type())
        fail(file.path(), ": optimizer tensor '", name, part, "' is ", t.scalar_type(), ", expected ", p.scalar_type(),
             " like its parameter");
      (std::string(part) == ".exp_avg" ? s.exp_avg : s.exp_avg_sq) = t.to(p.device()).contiguous();
    }
    s.step = torch::full({}, static_cast<double>(std::stoll(step->second)), p.options().dtype(torch::kFloat32));
  }
}

}  // namespace lofi::train
