#include "lofi/model/checkpointing.h"

#include <ATen/autocast_mode.h>

#include "lofi/model/router_stats.h"

namespace lofi::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What backward needs to run the block again: the block and the forward's autocast state; and
// what the block's routers recorded (router_stats.h) where a scope collects it.
struct Recompute : torch::CustomClassHolder {
  std::function<torch::Tensor(const torch::Tensor&)> block;
  c10::DeviceType device = c10::DeviceType::CPU;
  bool autocast = false;
  c10::ScalarType autocast_dtype = c10::ScalarType::BFloat16;
  bool records = false;  // a RouterStats scope was open in forward: the recomputation opens one too
  RouterStats routed;    // the forward's records (its probability sums without gradients)
  torch::Tensor counted;  // the rows the outer scope counts (RouterStats::counted), for both passes
};

// Sets autocast for DEVICE as the forward had it, and back as it was.
class AutocastAs {
 public:
  explicit AutocastAs(const Recompute& r)
      : device_(r.device), was_(at::autocast::is_autocast_enabled(r.device)), was_dtype_(at::autocast::get_autocast_dtype(r.device)) {
    at::autocast::set_autocast_dtype(device_, r.autocast_dtype);
    at::autocast::set_autocast_enabled(device_, r.autocast);
    if (r.autocast) at::autocast::increment_nesting();
    nested_ = r.autocast;
  }
  ~AutocastAs() {
    if (nested_ && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, was_);
    at::autocast::set_autocast_dtype(device_, was_dtype_);
  }

 private:
  c10::DeviceType device_;
  bool was_, nested_ = false;
  c10::ScalarType was_dtype_;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // ANCHOR requires a gradient, so that backward runs even when X does not (a frozen embedding
  // under LoRA): the block's parameters get their gradients there.
  // Outputs: the block's, then each router probability sum it recorded (router_stats.h), so the
  // load-balancing loss's gradient comes back here too.
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& anchor,
                               const c10::intrusive_ptr<Recompute>& recompute) {
    (void)anchor;
    ctx->save_for_backward({x});
    ctx->saved_data["recompute"] = c10::IValue::make_capsule(recompute);
    torch::NoGradGuard no_grad;
    RouterStatsScope scope(recompute->records ? &recompute->routed : nullptr);
    variable_list out{recompute->block(x)};
    for (const auto& sum : recompute->routed.probability_sums) out.push_back(sum);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto recompute = c10::static_intrusive_pointer_cast<Recompute>(ctx->saved_data["recompute"].toCapsule());
    torch::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    RouterStats routed;
    routed.counted = recompute->counted;
    variable_list outputs, grads;
    {
      torch::AutoGradMode grad(true);
      AutocastAs autocast(*recompute);
      RouterStatsScope scope(recompute->records ? &routed : nullptr);
      outputs.push_back(recompute->block(x));
    }
    grads.push_back(grad_outputs[0]);
    for (size_t i = 0; i < routed.probability_sums.size() && i + 1 < grad_outputs.size(); ++i)
      if (grad_outputs[i + 1].defined()) outputs.push_back(routed.probability_sums[i]), grads.push_back(grad_outputs[i + 1]);
    // Accumulates into the block's parameters' .grad (and their hooks), as the plain backward would.
    torch::autograd::backward(outputs, grads);
    return {x.grad(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor checkpointed(std::function<torch::Tensor(const torch::Tensor&)> block, const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) return block(x);
  auto recompute = c10::make_intrusive<Recompute>();
  recompute->device = x.device().type();
  recompute->autocast = at::autocast::is_autocast_enabled(recompute->device);
  recompute->autocast_dtype = at::autocast::get_autocast_dtype(recompute->device);
  recompute->block = std::move(block);
  static const torch::Tensor anchor = torch::zeros({}, torch::requires_grad());
  RouterStats* outer = router_stats();
  recompute->records = outer != nullptr;
  if (outer) recompute->counted = recompute->routed.counted = outer->counted;
  const variable_list out = CheckpointFunction::apply(x, anchor, recompute);
  if (outer) {  // the block's records, its probability sums as this function's outputs
    for (size_t i = 1; i < out.size(); ++i) outer->probability_sums.push_back(out[i]);
    for (const auto& choices : recompute->routed.choices) outer->choices.push_back(choices);
    outer->tokens += recompute->routed.tokens;
    recompute->routed = RouterStats{};  // the sums live on as outputs; backward records its own
  }
  return out[0];
}

}  // namespace lofi::model
