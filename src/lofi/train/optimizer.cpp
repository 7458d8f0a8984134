#include "lofi/train/optimizer.h"

#include <algorithm>
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
  return slot.master.defined() ? slot.master : param_view(slot);
}

torch::Tensor Optimizer::param_view(const Slot& slot) const {
  const torch::Tensor& p = params_[slot.param].param;
  if (slot.end < 0) return p;
  return p.detach().view({-1}).narrow(0, slot.begin, slot.end - slot.begin);  // (end - begin,)
}

void Optimizer::compute_in(torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  for (Slot& s : slots_) {
    if (s.master.defined()) continue;  // a fully sharded block's part: fp32 in its bucket already
    s.master = param_view(s).detach().to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
    s.writes_back = true;
  }
  for (auto& p : params_)
    if (p.param.scalar_type() != dtype) p.param.set_data(p.param.detach().to(dtype));
}

bool Optimizer::keeps_masters() const {
  return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.writes_back; });
}

io::NamedTensors Optimizer::masters() const {
  if (sharded_) fail("internal: a sharded optimizer's masters are gathered from every worker (train/checkpoint.h)");
  io::NamedTensors out;
  for (const Slot& s : slots_)
    if (s.writes_back) out.emplace_back(params_[s.param].name, s.master.view(params_[s.param].param.sizes()));
  return out;
}

std::vector<torch::Tensor> Optimizer::piece_values() const {
  std::vector<torch::Tensor> out;
  for (const Slot& s : slots_) out.push_back(values(s).reshape({-1}));
  return out;
}

namespace {

std::vector<torch::Tensor> defined_grads(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  return grads;
}

// Each gradient's L2 norm (N,); lower-precision gradients (train.param_dtype = "bf16") normed in fp32.
torch::Tensor norms(const std::vector<torch::Tensor>& grads) {
  const bool fp32 = grads.front().scalar_type() == torch::kFloat;
  return torch::stack(torch::_foreach_norm(grads, 2, fp32 ? std::nullopt : std::optional(torch::kFloat)));
}

torch::Tensor total_norm(const std::vector<torch::Tensor>& grads) {
  return torch::linalg_vector_norm(norms(grads), 2);  // ()
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
  if (!piece_grads.empty()) squares += norms(piece_grads).square().sum();
  comm.node_mean({squares});
  torch::Tensor total = (squares * static_cast<double>(comm.topology().node_size)).sqrt().reshape({});  // ()
  std::vector<torch::Tensor> grads = piece_grads;
  if (max_norm > 0 && !grads.empty()) clip_to(grads, total, max_norm);
  return total;
}

void Optimizer::set_lr(double lr) {
  lr_ = lr;
  if (lr_on_device_.defined()) lr_on_device_.fill_(lr);
}

void Optimizer::hold_for_graphs() {
  if (params_.empty()) return;
  holds_grads_ = true;
  lr_on_device_ = torch::full({}, lr_, torch::TensorOptions(torch::kFloat32).device(params_.front().param.device()));
}

void Optimizer::zero_grad() {
  if (!holds_grads_) {
    for (auto& p : params_) p.param.mutable_grad().reset();
    return;
  }
  std::vector<torch::Tensor> grads;
  for (auto& p : params_)
    if (p.param.grad().defined()) grads.push_back(p.param.mutable_grad());
  if (!grads.empty()) torch::_foreach_zero_(grads);
}

void Optimizer::step(const torch::Tensor& found_inf, const std::vector<torch::Tensor>& piece_grads) {
  torch::NoGradGuard no_grad;
  if (sharded_ && piece_grads.size() != slots_.size())
    fail("internal: a sharded optimizer step got ", piece_grads.size(), " gradients for ", slots_.size(), " pieces");
  const std::optional<torch::Tensor> skip = found_inf.defined() ? std::optional<torch::Tensor>(found_inf) : std::nullopt;
  // The kernel takes lists of one dtype and device: weight-decayed and plain groups apart.
  for (bool decay : {true, false}) {
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    std::vector<const Slot*> written;  // whose masters go back to their parameters after the kernel
    int64_t converted = 0;             // bytes of fp32 gradient copies made for this batch
    // One kernel call over what is gathered so far. The kernel is elementwise, so splitting the
    // list changes nothing but how many fp32 gradient copies (of bf16 gradients) live at once.
    auto flush = [&] {
      if (params.empty()) return;
      torch::_foreach_add_(steps, 1);  // the kernel reads the step after this update's increment
      // The learning rate as a number, or (hold_for_graphs) as the tensor a replay reads: two overloads.
      auto adamw = [&](const auto& lr) {
        at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, config_.beta1, config_.beta2,
                          decay ? config_.weight_decay : 0.0, config_.eps, /*amsgrad=*/false, /*maximize=*/false,
                          /*grad_scale=*/std::nullopt, skip);
      };
      if (lr_on_device_.defined()) adamw(lr_on_device_);
      else adamw(lr_);
      // A skipped update leaves the step counts where they were, as PyTorch's _fused_adamw does.
      if (skip) torch::_foreach_sub_(steps, std::vector<torch::Tensor>(steps.size(), found_inf));
      for (const Slot* s : written) param_view(*s).copy_(s->master);  // rounded to the parameter's dtype
      params.clear(), grads.clear(), exp_avgs.clear(), exp_avg_sqs.clear(), steps.clear(), written.clear();
      converted = 0;
    };
    constexpr int64_t kConvertedBytes = 256ll << 20;
    for (size_t k = 0; k < slots_.size(); ++k) {
      Slot& s = slots_[k];
      torch::Tensor grad = sharded_ ? piece_grads[k] : params_[s.param].param.grad();
      if (s.decay != decay || !grad.defined()) continue;
      const torch::Tensor p = values(s);
      if (grad.scalar_type() != p.scalar_type()) {  // a bf16 parameter's gradient, for its fp32 master
        grad = grad.to(p.scalar_type());
        converted += static_cast<int64_t>(grad.nbytes());
      }
      if (!s.step.defined()) {
        s.exp_avg = torch::zeros_like(p, torch::MemoryFormat::Preserve);
        s.exp_avg_sq = torch::zeros_like(p, torch::MemoryFormat::Preserve);
        s.step = torch::zeros({}, p.options().dtype(torch::kFloat32));
      }
      params.push_back(p), grads.push_back(grad), exp_avgs.push_back(s.exp_avg);
      exp_avg_sqs.push_back(s.exp_avg_sq), steps.push_back(s.step);
      if (s.writes_back) written.push_back(&s);
      if (converted >= kConvertedBytes) flush();
    }
    flush();
  }
}

io::NamedTensors Optimizer::state(io::Metadata& metadata) const {
  if (sharded_) fail("internal: a sharded optimizer's workers each save their pieces (shard_state)");
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

StateReader state_reader(const io::SafetensorsFile& file) {
  StateReader reader;
  reader.source = file.path();
  reader.read = [&file](const std::string& name, int64_t begin, int64_t end, at::IntArrayRef shape) {
    torch::Tensor t = file.load(name);
    if (t.sizes() != shape) fail(file.path(), ": optimizer tensor '", name, "' has shape ", t.sizes(), ", expected ", shape);
    return t.reshape({-1}).narrow(0, begin, end - begin);
  };
  reader.step = [&file](const std::string& param) {
    auto step = file.metadata().find(param + ".step");
    if (step == file.metadata().end()) fail(file.path(), ": no optimizer state for parameter '", param, "'");
    return std::stoll(step->second);
  };
  return reader;
}

void Optimizer::load_state(const StateReader& reader) {
  for (Slot& s : slots_) {
    const auto& [name, p] = params_[s.param];
    const int64_t step = reader.step(name);
    const int64_t end = s.end < 0 ? p.numel() : s.end;
    // Where the update runs: the master (a fully sharded block's part, on the device while the
    // parameter itself may have no memory yet) or the parameter.
    const torch::TensorOptions at = values(s).options();
    for (const char* part : {".exp_avg", ".exp_avg_sq"}) {
      torch::Tensor t = reader.read(name + part, s.begin, end, p.sizes());  // (end - begin,)
      const torch::ScalarType want = values(s).scalar_type();  // the master's, where the parameter has one
      if (t.scalar_type() != want)
        fail(reader.source, ": optimizer tensor '", name, part, "' is ", t.scalar_type(), ", expected ", want, " like its parameter's master values");
      if (s.end < 0) t = t.view(p.sizes());
      (std::string(part) == ".exp_avg" ? s.exp_avg : s.exp_avg_sq) = t.to(at.device()).contiguous();
    }
    s.step = torch::full({}, static_cast<double>(step), at.dtype(torch::kFloat32));
  }
}

io::NamedTensors Optimizer::shard_state(io::Metadata& metadata) const {
  if (!sharded_) fail("internal: an unsharded optimizer's state is saved whole (state())");
  const std::vector<torch::Tensor> exp_avg = piece_state("exp_avg"), exp_avg_sq = piece_state("exp_avg_sq");
  const std::string steps = std::to_string(steps_taken());  // every piece of a sharded node steps at every step
  io::NamedTensors out;
  for (size_t k = 0; k < slots_.size(); ++k) {
    const std::string& name = params_[slots_[k].param].name;
    out.emplace_back(name + ".exp_avg", exp_avg[k]);
    out.emplace_back(name + ".exp_avg_sq", exp_avg_sq[k]);
    metadata[name + ".range"] = std::to_string(slots_[k].begin) + "," + std::to_string(slots_[k].end);
    metadata[name + ".step"] = steps;
  }
  return out;
}

std::vector<torch::Tensor> Optimizer::piece_state(const std::string& which) const {
  std::vector<torch::Tensor> out;
  for (const Slot& s : slots_) {
    const torch::Tensor& t = which == "exp_avg" ? s.exp_avg : s.exp_avg_sq;
    out.push_back(t.defined() ? t : torch::zeros({s.end - s.begin}, values(s).options()));
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

int64_t Optimizer::master_bytes() const {
  int64_t bytes = 0;
  for (const Slot& s : slots_)
    if (s.writes_back) bytes += static_cast<int64_t>(s.master.nbytes());
  return bytes;
}

void Optimizer::release() {
  for (Slot& s : slots_) s.exp_avg.reset(), s.exp_avg_sq.reset(), s.step.reset(), s.master.reset(), s.writes_back = false;
}

void Optimizer::release_into_params() {
  if (sharded_) fail("internal: a sharded optimizer's masters are gathered into the parameters (dist/grad_sync.h)");
  for (Slot& s : slots_)
    if (s.writes_back) params_[s.param].param.set_data(s.master.view(params_[s.param].param.sizes()));
  release();
}

}  // namespace lofi::train
