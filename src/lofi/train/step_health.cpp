#include "lofi/train/step_health.h"

namespace lofi::train {

namespace {
enum Slot : int64_t { kLoss, kNorm, kSkipped, kFirstNewSkip, kNewSkips, kDivergedAt, kDivergedLoss, kDivergedNorm, kSlots };
}

StepHealth::StepHealth(const torch::Device& device, int64_t allowed_skips)
    : device_(device),
      allowed_(allowed_skips),
      state_(torch::zeros({kSlots}, torch::TensorOptions(torch::kDouble).device(device))),
      at_(torch::zeros({}, state_.options())) {}

void StepHealth::set_step(int64_t step) { at_.fill_(static_cast<double>(step + 1)); }

torch::Tensor StepHealth::record(const torch::Tensor& loss, const torch::Tensor& norm) {
  torch::NoGradGuard no_grad;
  const torch::Tensor l = loss.detach().reshape({}).to(device_, torch::kDouble);
  const torch::Tensor n = norm.detach().reshape({}).to(device_, torch::kDouble);
  const torch::Tensor bad = torch::logical_not(torch::isfinite(l).logical_and(torch::isfinite(n)));  // () bool
  const torch::Tensor s = state_;
  const torch::Tensor within = bad.logical_and(s[kSkipped] < static_cast<double>(allowed_));
  const torch::Tensor over = bad.logical_and(s[kSkipped] >= static_cast<double>(allowed_)).logical_and(s[kDivergedAt] == 0);
  const torch::Tensor w = within.to(torch::kDouble);
  state_.copy_(torch::stack({l, n, s[kSkipped] + w, torch::where(within.logical_and(s[kFirstNewSkip] == 0), at_, s[kFirstNewSkip]),
                             s[kNewSkips] + w, torch::where(over, at_, s[kDivergedAt]), torch::where(over, l, s[kDivergedLoss]),
                             torch::where(over, n, s[kDivergedNorm])}));  // (8), read whole before written
  return bad.to(torch::kFloat);
}

StepHealth::Reading StepHealth::read() {
  const torch::Tensor host = state_.cpu();
  const double* v = host.data_ptr<double>();
  last_.loss = v[kLoss];
  last_.grad_norm = v[kNorm];
  last_.skipped = static_cast<int64_t>(v[kSkipped]);
  last_.first_new_skip = static_cast<int64_t>(v[kFirstNewSkip]);
  last_.new_skips = static_cast<int64_t>(v[kNewSkips]);
  last_.diverged_at = static_cast<int64_t>(v[kDivergedAt]);
  last_.diverged_loss = v[kDivergedLoss];
  last_.diverged_norm = v[kDivergedNorm];
  state_.narrow(0, kFirstNewSkip, 2).zero_();  // kFirstNewSkip, kNewSkips: counted anew until the next read
  return last_;
}

}  // namespace lofi::train
