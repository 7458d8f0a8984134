#include "lofi/train/outer_optimizer.h"

#include "lofi/error.h"

namespace lofi::train {

OuterOptimizer::OuterOptimizer(const std::vector<NamedParam>& params, double lr, double momentum) {
  for (const auto& p : params) {
    names_.push_back(p.name);
    anchor_.push_back(p.param.detach().clone());
  }
  sgd_ = std::make_unique<torch::optim::SGD>(anchor_,
                                              torch::optim::SGDOptions(lr).momentum(momentum).nesterov(momentum > 0));
}

void OuterOptimizer::step(const std::vector<NamedParam>& params) {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < params.size(); ++k) anchor_[k].mutable_grad() = anchor_[k] - params[k].param.detach();
  sgd_->step();
  for (size_t k = 0; k < params.size(); ++k) {
    params[k].param.copy_(anchor_[k]);
    anchor_[k].mutable_grad() = torch::Tensor();
  }
}

io::NamedTensors OuterOptimizer::state() const {
  io::NamedTensors out;
  for (size_t k = 0; k < anchor_.size(); ++k) {
    out.emplace_back("outer.anchor." + names_[k], anchor_[k]);
    auto it = sgd_->state().find(anchor_[k].unsafeGetTensorImpl());
    if (it != sgd_->state().end())
      out.emplace_back("outer.momentum." + names_[k],
                       static_cast<const torch::optim::SGDParamState&>(*it->second).momentum_buffer());
  }
  return out;
}

void OuterOptimizer::load_state(const io::SafetensorsFile& file) {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < anchor_.size(); ++k) {
    const std::string anchor = "outer.anchor." + names_[k], momentum = "outer.momentum." + names_[k];
    if (!file.find(anchor))
      fail(file.path(), ": no '", anchor, "': this checkpoint was not written with dist.outer_optimizer = \"nesterov\"");
    const torch::Tensor a = file.load(anchor);
    if (a.sizes() != anchor_[k].sizes())
      fail(file.path(), ": '", anchor, "' has shape ", a.sizes(), ", expected ", anchor_[k].sizes());
    anchor_[k].copy_(a);
    if (file.find(momentum)) {
      auto st = std::make_unique<torch::optim::SGDParamState>();
      st->momentum_buffer(file.load(momentum).to(anchor_[k].device()).contiguous());
      sgd_->state()[anchor_[k].unsafeGetTensorImpl()] = std::move(st);
    }
  }
}

}  // namespace lofi::train
