#include "lofi/dist/grad_sync.h"

#include <torch/csrc/distributed/c10d/Backend.hpp>

#include "lofi/error.h"

namespace lofi::dist {

struct GradientSync::Bucket {
  std::vector<size_t> params;  // indices into params_
  torch::Tensor buffer;        // (sum of numels,) fp32
  size_t ready = 0;
  c10::intrusive_ptr<c10d::Work> work;
};

GradientSync::GradientSync(Comm& comm, const std::vector<torch::Tensor>& params, const std::vector<std::string>& names,
                           bool overlap, double bucket_mb)
    : comm_(comm), params_(params), names_(names), overlap_(overlap && comm.node_group()) {
  if (!overlap_) return;
  const int64_t cap = static_cast<int64_t>(bucket_mb * 1024 * 1024 / 4);  // elements
  slot_.resize(params.size());
  std::vector<int64_t> sizes;
  for (size_t k = params.size(); k-- > 0;) {  // reverse order: the last layers' gradients come first
    if (buckets_.empty() || (sizes.back() > 0 && sizes.back() + params[k].numel() > cap)) {
      buckets_.push_back(std::make_unique<Bucket>());
      sizes.push_back(0);
    }
    slot_[k] = {buckets_.size() - 1, sizes.back()};
    buckets_.back()->params.push_back(k);
    sizes.back() += params[k].numel();
  }
  for (size_t b = 0; b < buckets_.size(); ++b)
    buckets_[b]->buffer = torch::zeros({sizes[b]}, torch::TensorOptions().device(comm.device()));
  for (size_t k = 0; k < params.size(); ++k)
    hooks_.push_back(params_[k].register_hook([this, k](const torch::Tensor& grad) { on_gradient(k, grad); }));
}

// The hooks capture this object: they go with it.
GradientSync::~GradientSync() {
  for (size_t k = 0; k < hooks_.size(); ++k) params_[k].remove_hook(hooks_[k]);
}

void GradientSync::before_backward(bool sync) { syncing_ = overlap_ && sync; }

// Runs on the autograd thread as each parameter's gradient arrives, before it is accumulated.
void GradientSync::on_gradient(size_t k, const torch::Tensor& grad) {
  if (!syncing_) return;
  auto [b, offset] = slot_[k];
  Bucket& bucket = *buckets_[b];
  torch::NoGradGuard no_grad;
  torch::Tensor slice = bucket.buffer.narrow(0, offset, params_[k].numel()).view_as(params_[k]);
  slice.copy_(grad);
  const torch::Tensor& accumulated = params_[k].grad();  // earlier micro-batches' share
  if (accumulated.defined()) slice.add_(accumulated);
  if (++bucket.ready == bucket.params.size()) launch_ready_buckets();
}

// Buckets are launched strictly in order so every rank issues the same collective sequence.
void GradientSync::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->ready == buckets_[next_launch_]->params.size()) {
    Bucket& bucket = *buckets_[next_launch_++];
    std::vector<torch::Tensor> tensors{bucket.buffer};
    bucket.work = comm_.node_group()->allreduce(tensors);
    comm_.count_within_node(bucket.buffer.numel() * 4);
  }
}

void GradientSync::after_backward() {
  if (!overlap_) {
    std::vector<torch::Tensor> grads;
    for (size_t k = 0; k < params_.size(); ++k) {
      if (!params_[k].grad().defined())
        fail("gradient sync: parameter '", names_[k], "' got no gradient this step; every parameter must be used");
      grads.push_back(params_[k].mutable_grad());
    }
    comm_.node_mean(grads);
    return;
  }
  syncing_ = false;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = *buckets_[b];
    if (bucket.ready != bucket.params.size())
      fail("gradient sync: a parameter in the bucket of '", names_[bucket.params[0]],
           "' got no gradient this step (every parameter must be used); the node's other workers will time out");
  }
  const double size = static_cast<double>(comm_.topology().node_size);
  torch::NoGradGuard no_grad;
  for (auto& bucket_ptr : buckets_) {
    Bucket& bucket = *bucket_ptr;
    comm_.wait(bucket.work, "gradient bucket all-reduce");
    bucket.buffer.div_(size);
    for (size_t k : bucket.params)
      params_[k].mutable_grad().copy_(bucket.buffer.narrow(0, slot_[k].second, params_[k].numel()).view_as(params_[k]));
    bucket.ready = 0;
    bucket.work.reset();
  }
  next_launch_ = 0;
}

}  // namespace lofi::dist
