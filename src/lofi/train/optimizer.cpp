#include "lofi/train/optimizer.h"

#include <optional>

#include "lofi/error.h"

namespace lofi::train {

Optimizer::Optimizer(const torch::nn::Module& module, const TrainConfig& c) : config_(c), lr_(c.lr) {
  for (const auto& item : module.named_parameters()) {
    if (!item.value().requires_grad()) continue;  // frozen (a LoRA run's base): no state, no update
    params_.push_back({item.key(), item.value()});
    slots_.push_back({});
    slots_.back().param = params_.size() - 1;
    slots_.back().decay = item.value().dim() >= 2;
  }
}

void Optimizer::shard(const std::vector<dist::Piece>& pieces, const std::vector<torch::Tensor>& values) {
  if (!values.empty() && values.size() != pieces.size()) fail("internal: ", values.size(), " values for ", pieces.size(), " pieces");
  std::vector<Slot> slots;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const dist::Piece& piece = pieces[i];
    Slot s;
    s.param = piece.param, s.begin = piece.begin, s.end = piece.end;
    if (!values.empty()) s.master = values[i];
    s.decay = slots_.at(piece.param).decay;  // decided by the whole parameter's shape
    slots.push_back(std::move(s));
  }
  slots_ = std::move(slots);
  sharded_ = true;
}

torch::Tensor Optimizer::values(const Slot& slot) const {
  if (slot.master.defined()) return slot.master;
  const torch::Tensor& p = params_[slot.param].param;
  if (slot.end < 0) return p;
  return p.detach().view({-1}).narrow(0, slot.begin, slot.end - slot.begin);  // (end - begin,)
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

namespace {

// Scales GRADS by min(1, MAX_NORM / (TOTAL + 1e-6)), as clip_grad_norm_ does.
void clip_to(std::vector<torch::Tensor>& grads, const torch::Tensor& total, double max_norm) {
  torch::Tensor coef = torch::clamp(max_norm / (total + 1e-6), /*min=*/c10::nullopt, /*max=*/1.0);
  torch::_foreach_mul_(grads, coef);
}

}  // namespace

torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads = defined_grads(params);
  if (grads.empty()) return torch::zeros({});
  torch::Tensor total = total_norm(grads);
  clip_to(grads, total, max_norm);
  return total;
}

torch::Tensor clip_sharded_grad_norm(const std::vector<torch::Tensor>& piece_grads, dist::Comm& comm, double max_norm) {
  torch::NoGradGuard no_grad;
  torch::Tensor squares = torch::zeros({1}, torch::TensorOptions().device(comm.device()));  // (1,) this worker's sum
  if (!piece_grads.empty()) squares += torch::stack(torch::_foreach_norm(piece_grads, 2)).square().sum();
  comm.node_mean({squares});
  torch::Tensor total = (squares * static_cast<double>(comm.topology().node_size)).sqrt().reshape({});  // ()
  std::vector<torch::Tensor> grads = piece_grads;
  if (max_norm > 0 && !grads.empty()) clip_to(grads, total, max_norm);
  return total;
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.param.mutable_grad().reset();
}

void Optimizer::step(const torch::Tensor& found_inf, const std::vector<torch::Tensor>& piece_grads) {
  torch::NoGradGuard no_grad;
  if (sharded_ && piece_grads.size() != slots_.size())
    fail("internal: a sharded optimizer step got ", piece_grads.size(), " gradients for ", slots_.size(), " pieces");
  // The kernel takes lists of one dtype and device: weight-decayed and plain groups apart.
  for (bool decay : {true, false}) {
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    for (size_t k = 0; k < slots_.size(); ++k) {
      Slot& s = slots_[k];
      const torch::Tensor grad = sharded_ ? piece_grads[k] : params_[s.param].param.grad();
      if (s.decay != decay || !grad.defined()) continue;
      const torch::Tensor p = values(s);
      if (!s.step.defined()) {
        s.exp_avg = torch::zeros_like(p, torch::MemoryFormat::Preserve);
        s.exp_avg_sq = torch::zeros_like(p, torch::MemoryFormat::Preserve);
        s.step = torch::zeros({}, p.options().dtype(torch::kFloat32));
      }
      params.push_back(p), grads.push_back(grad), exp_avgs.push_back(s.exp_avg);
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
  if (sharded_) fail("internal: a sharded optimizer's state is gathered from every worker (train/sharded_state.h)");
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
  for (Slot& s : slots_) {
    const auto& [name, p] = params_[s.param];
    auto step = file.metadata().find(name + ".step");
    if (step == file.metadata().end()) fail(file.path(), ": no optimizer state for parameter '", name, "'");
    for (const char* part : {".exp_avg", ".exp_avg_sq"}) {
      torch::Tensor t = file.load(name + part);
      if (t.sizes() != p.sizes())
        fail(file.path(), ": optimizer tensor '", name, part, "' has shape ", t.sizes(), ", expected ", p.sizes());
      if (t.scalar_type() != p.scalar_type())
        fail(file.path(), ": optimizer tensor '", name, part, "' is ", t.scalar_type(), ", expected ", p.scalar_type(),
             " like its parameter");
      if (s.end >= 0) t = t.reshape({-1}).narrow(0, s.begin, s.end - s.begin);  // this worker's piece
      (std::string(part) == ".exp_avg" ? s.exp_avg : s.exp_avg_sq) = t.to(p.device()).contiguous();
    }
    s.step = torch::full({}, static_cast<double>(std::stoll(step->second)), p.options().dtype(torch::kFloat32));
  }
}

std::vector<torch::Tensor> Optimizer::piece_state(const std::string& which) const {
  std::vector<torch::Tensor> out;
  for (const Slot& s : slots_) {
    const torch::Tensor& t = which == "exp_avg" ? s.exp_avg : s.exp_avg_sq;
    out.push_back(t.defined() ? t : torch::zeros({s.end - s.begin}, params_[s.param].param.options()));
  }
  return out;
}

int64_t Optimizer::steps_taken() const {
  for (const Slot& s : slots_)
    if (s.step.defined()) return static_cast<int64_t>(s.step.item<float>());
  return 0;
}

int64_t Optimizer::state_bytes() const {
  int64_t bytes = 0;
  for (const Slot& s : slots_)
    for (const torch::Tensor* t : {&s.exp_avg, &s.exp_avg_sq, &s.step})
      if (t->defined()) bytes += static_cast<int64_t>(t->nbytes());
  return bytes;
}

void Optimizer::release() {
  for (Slot& s : slots_) s.exp_avg.reset(), s.exp_avg_sq.reset(), s.step.reset(), s.master.reset();
}

}  // namespace lofi::train
