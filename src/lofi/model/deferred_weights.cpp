#include "lofi/model/deferred_weights.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/accumulate.h>
#include <torch/csrc/autograd/variable.h>

#include "lofi/error.h"

namespace lofi::model {
namespace {

thread_local bool meta_active = false;
thread_local bool meta_keeps_draws = false;
thread_local torch::Tensor meta_scratch;  // (bytes,) uint8: the outermost scope's
thread_local bool no_init_draws = false;

}  // namespace

MetaParameters::MetaParameters(bool keep_draws) : was_active_(meta_active), kept_draws_(meta_keeps_draws) {
  meta_active = true;
  meta_keeps_draws = keep_draws;
}

MetaParameters::~MetaParameters() {
  meta_active = was_active_;
  meta_keeps_draws = kept_draws_;
  if (!meta_active) meta_scratch.reset();
}

torch::Tensor MetaParameters::scratch(at::IntArrayRef sizes, torch::Dtype dtype) {
  if (!meta_active) fail("internal: scratch draws outside a MetaParameters scope");
  const int64_t bytes = c10::multiply_integers(sizes) * static_cast<int64_t>(c10::elementSize(dtype));
  if (!meta_scratch.defined() || meta_scratch.numel() < bytes) meta_scratch = torch::empty({bytes}, torch::kUInt8);
  return meta_scratch.narrow(0, 0, bytes).view(dtype).view(sizes);  // (bytes,) -> (bytes / element,) -> SIZES, contiguous
}

bool MetaParameters::active() { return meta_active; }
bool MetaParameters::keeps_draws() { return meta_keeps_draws; }

NoInitDraws::NoInitDraws() : was_active_(no_init_draws) { no_init_draws = true; }
NoInitDraws::~NoInitDraws() { no_init_draws = was_active_; }

bool init_draws_skipped() { return no_init_draws || (meta_active && !meta_keeps_draws); }

torch::TensorOptions parameter_options() {
  return meta_active ? torch::TensorOptions().device(torch::kMeta) : torch::TensorOptions();
}

void DeferredWeights::defer(const torch::Tensor& param, const std::string& name, Fill fill) {
  if (!param.is_meta()) fail("internal: parameter '", name, "' has memory already; only a meta parameter is deferred");
  entries_[name] = std::move(fill);
}

void DeferredWeights::defer_draw(const torch::Tensor& param, const std::string& name, Draw draw) {
  const at::Generator& stream = at::detail::getDefaultCPUGenerator();
  at::Generator kept = stream.clone();
  draw(MetaParameters::scratch(param.sizes(), param.scalar_type()), stream);
  defer(param, name, [kept, draw = std::move(draw)](const torch::Tensor& into) { draw(into, kept); });
}

void DeferredWeights::fill(const std::string& name, const torch::Tensor& param) {
  auto it = entries_.find(name);
  if (it == entries_.end()) fail("internal: parameter '", name, "' has no deferred value");
  const Fill fill = std::move(it->second);
  entries_.erase(it);
  if (!param.is_meta()) fail("internal: parameter '", name, "' has memory already");
  torch::NoGradGuard no_grad;
  torch::Tensor value = torch::empty(param.sizes(), param.options().device(torch::kCPU));
  fill(value);
  // What Tensor::set_data does past its check, which refuses data from another backend than the
  // meta device's: the parameter's TensorImpl takes VALUE's storage, device and sizes, keeping its
  // autograd state (and so every handle of it: the module's, the layer's member, the optimizer's).
  // set_data would also drop a gradient accumulator made for the old device; none exists before
  // the first backward.
  if (torch::autograd::impl::try_get_grad_accumulator(param))
    fail("internal: parameter '", name, "' was used in a backward pass before it had a value");
  param.unsafeGetTensorImpl()->shallow_copy_from(value.getIntrusivePtr());
}

void DeferredWeights::keep(std::shared_ptr<const void> source) { sources_.push_back(std::move(source)); }

void DeferredWeights::done() {
  if (!entries_.empty()) {
    std::string names;
    for (const auto& [name, fill] : entries_) names += (names.empty() ? "" : ", ") + name;
    fail("internal: parameters never given their start value: ", names);
  }
  sources_.clear();
}

}  // namespace lofi::model
