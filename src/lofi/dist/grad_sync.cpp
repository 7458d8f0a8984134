#include "lofi/dist/grad_sync.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>

#include "lofi/error.h"

namespace lofi::dist {

struct GradientSync::Bucket {
  torch::Tensor buffer;  // (padded,) fp32: kept (none, optimizer), or one backward's (gradients)
  torch::Tensor part;    // (padded / workers,) this worker's reduce-scattered share, in flight (gradients)
  torch::Tensor summed;  // (padded / workers,) its mean, accumulated over the step's micro-batches (gradients)
  size_t ready = 0;
  c10::intrusive_ptr<c10d::Work> work;
};

// ZeRO-2's hook: runs after autograd has accumulated a parameter's gradient into .grad, hands it
// to its bucket and frees it.
struct GradientSync::AccumulatedHook : torch::autograd::PostAccumulateGradHook {
  AccumulatedHook(GradientSync* owner, size_t index) : sync(owner), param(index) {}
  void operator()(const torch::autograd::Variable& p) override { sync->on_gradient(param, p.grad()); }
  GradientSync* sync;
  size_t param;
};

GradientSync::GradientSync(Comm& comm, const std::vector<torch::Tensor>& params, const std::vector<std::string>& names,
                           bool overlap, double bucket_mb, ShardMode mode, bool world)
    : comm_(comm),
      params_(params),
      names_(names),
      group_(world ? comm.world_group() : comm.node_group()),
      group_size_(world ? comm.env().world_size : comm.topology().node_size),
      world_(world),
      overlap_(overlap && group_),
      mode_(mode) {
  if (mode_ != ShardMode::none && (!overlap_ || world_))
    fail("internal: dist.shard = \"", shard_mode_name(mode_), "\" needs a node of several workers and dist.overlap");
  if (!overlap_) return;
  const int64_t workers = mode_ == ShardMode::none ? 1 : group_size_;
  std::vector<int64_t> numels;
  for (const auto& p : params) numels.push_back(p.numel());
  layout_ = plan_shards(numels, static_cast<int64_t>(bucket_mb * 1024 * 1024 / 4), workers,
                        mode_ == ShardMode::none ? 0 : comm.topology().node_rank);
  if (mode_ != ShardMode::none) pieces_ = layout_.pieces();
  host_staged_ = mode_ != ShardMode::none && comm.device().is_cuda() && group_->getBackendName() == "gloo";
  for (const BucketLayout& b : layout_.buckets) {
    buckets_.push_back(std::make_unique<Bucket>());
    if (mode_ != ShardMode::gradients)
      buckets_.back()->buffer = torch::zeros({b.padded}, torch::TensorOptions().device(comm.device()));
  }
  for (size_t k = 0; k < params.size(); ++k) {
    if (mode_ == ShardMode::gradients)
      torch::autograd::impl::set_post_acc_grad_hooks(params_[k], std::make_unique<AccumulatedHook>(this, k));
    else
      hooks_.push_back(params_[k].register_hook([this, k](const torch::Tensor& grad) { on_gradient(k, grad); }));
  }
}

// The hooks capture this object: they go with it.
GradientSync::~GradientSync() {
  for (size_t k = 0; k < hooks_.size(); ++k) params_[k].remove_hook(hooks_[k]);
  if (mode_ == ShardMode::gradients)
    for (auto& p : params_) torch::autograd::impl::post_acc_grad_hooks(p).reset();
}

void GradientSync::count(int64_t bytes, int64_t ring_passes) {
  if (world_) comm_.count_between_nodes(bytes, ring_passes);
  else comm_.count_within_node(bytes, ring_passes);
}

torch::Device GradientSync::buffer_device() const { return host_staged_ ? torch::Device(torch::kCPU) : comm_.device(); }

void GradientSync::before_backward(bool sync) {
  if (step_done_) micros_ = 0, step_done_ = false;
  syncing_ = overlap_ && (sync || mode_ == ShardMode::gradients);
}

torch::Tensor GradientSync::bucket_slice(Bucket& bucket, size_t k) {
  return bucket.buffer.narrow(0, layout_.slot[k].second, params_[k].numel()).view_as(params_[k]);
}

// Runs on the autograd thread as each parameter's gradient arrives: before it is accumulated
// (none, optimizer: earlier micro-batches' share is added here), or after (gradients: it is the
// micro-batch's own, and is freed once copied).
void GradientSync::on_gradient(size_t k, const torch::Tensor& grad) {
  if (!syncing_) return;
  const size_t b = layout_.slot[k].first;
  Bucket& bucket = *buckets_[b];
  torch::NoGradGuard no_grad;
  if (!bucket.buffer.defined())  // zeros: the padding past the last parameter stays 0
    bucket.buffer = torch::zeros({layout_.buckets[b].padded}, torch::TensorOptions().device(buffer_device()));
  torch::Tensor slice = bucket_slice(bucket, k);
  slice.copy_(grad);
  if (mode_ == ShardMode::gradients) {
    params_[k].mutable_grad().reset();
  } else if (const torch::Tensor& accumulated = params_[k].grad(); accumulated.defined()) {
    slice.add_(accumulated);
  }
  if (++bucket.ready == layout_.buckets[b].params.size()) launch_ready_buckets();
}

// Buckets are launched strictly in order so every rank issues the same collective sequence.
// ZeRO-2 keeps at most kInFlight buckets' buffers: launching one settles the one that many before
// it, so a backward never holds the whole gradient at once.
void GradientSync::launch_ready_buckets() {
  constexpr size_t kInFlight = 2;
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->ready == layout_.buckets[next_launch_].params.size()) {
    const size_t b = next_launch_++;
    Bucket& bucket = *buckets_[b];
    const int64_t bytes = bucket.buffer.numel() * 4;
    if (mode_ == ShardMode::gradients) {
      bucket.part = torch::empty({layout_.part_numel(b)}, bucket.buffer.options());
      bucket.work = group_->_reduce_scatter_base(bucket.part, bucket.buffer);
      count(bytes, /*ring_passes=*/1);
      if (b >= kInFlight) settle(b - kInFlight);
    } else {
      std::vector<torch::Tensor> tensors{bucket.buffer};
      bucket.work = group_->allreduce(tensors);
      count(bytes, /*ring_passes=*/2);
    }
  }
}

// ZeRO-2: waits for bucket B's reduce-scatter, adds this worker's mean part to the step's sum and
// frees the bucket's buffers.
void GradientSync::settle(size_t b) {
  Bucket& bucket = *buckets_[b];
  if (!bucket.work) return;  // settled already
  comm_.wait(bucket.work, "gradient bucket reduce-scatter");
  torch::NoGradGuard no_grad;
  torch::Tensor mean = bucket.part.to(comm_.device()).div_(static_cast<double>(group_size_));
  if (micros_ == 0) bucket.summed = mean;
  else bucket.summed.add_(mean);
  bucket.buffer.reset(), bucket.part.reset(), bucket.work.reset();
}

void GradientSync::after_backward(bool sync) {
  if (!overlap_) {
    if (!sync) return;
    std::vector<torch::Tensor> grads;
    for (size_t k = 0; k < params_.size(); ++k) {
      if (!params_[k].grad().defined())
        fail("gradient sync: parameter '", names_[k], "' got no gradient this step; every parameter must be used");
      grads.push_back(params_[k].mutable_grad());
    }
    if (world_) comm_.world_mean(grads);
    else comm_.node_mean(grads);
    return;
  }
  if (!syncing_) return;
  syncing_ = false;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    if (buckets_[b]->ready != layout_.buckets[b].params.size())
      fail("gradient sync: a parameter in the bucket of '", names_[layout_.buckets[b].params[0]],
           "' got no gradient this step (every parameter must be used); the node's other workers will time out");
  }
  const double size = static_cast<double>(group_size_);
  torch::NoGradGuard no_grad;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = *buckets_[b];
    if (mode_ == ShardMode::gradients) {
      settle(b);
    } else {
      comm_.wait(bucket.work, "gradient bucket all-reduce");
      bucket.buffer.div_(size);
      for (size_t k : layout_.buckets[b].params) params_[k].mutable_grad().copy_(bucket_slice(bucket, k));
    }
    bucket.ready = 0;
    bucket.work.reset();
  }
  next_launch_ = 0;
  ++micros_;
  if (sync) step_done_ = true;
}

std::vector<torch::Tensor> GradientSync::piece_grads() const {
  std::vector<torch::Tensor> out;
  for (const Piece& piece : pieces_) {
    if (mode_ == ShardMode::gradients)
      out.push_back(buckets_[piece.bucket]->summed.narrow(0, piece.shard_offset, piece.numel()));
    else
      out.push_back(params_[piece.param].grad().view({-1}).narrow(0, piece.begin, piece.numel()));
  }
  return out;
}

void GradientSync::gather(const std::vector<torch::Tensor>& piece_values,
                          const std::function<void(size_t, const torch::Tensor&)>& sink) {
  torch::NoGradGuard no_grad;
  std::vector<std::vector<size_t>> of_bucket(buckets_.size());  // piece indices by bucket
  for (size_t i = 0; i < pieces_.size(); ++i) of_bucket[pieces_[i].bucket].push_back(i);
  struct InFlight {
    torch::Tensor full;  // (padded,)
    c10::intrusive_ptr<c10d::Work> work;
  };
  auto launch = [&](size_t b) {
    const auto options = torch::TensorOptions().device(buffer_device());
    torch::Tensor part = torch::zeros({layout_.part_numel(b)}, options);
    for (size_t i : of_bucket[b])
      part.narrow(0, pieces_[i].shard_offset, pieces_[i].numel()).copy_(piece_values[i].reshape({-1}));
    InFlight f{torch::empty({layout_.buckets[b].padded}, options), {}};
    f.work = group_->_allgather_base(f.full, part);
    count(f.full.numel() * 4, /*ring_passes=*/1);
    return f;
  };
  // Two buckets in flight at most: the next one's gather runs while this one is written out.
  InFlight current = launch(0);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    InFlight next = b + 1 < buckets_.size() ? launch(b + 1) : InFlight{};
    comm_.wait(current.work, "all-gather of the node's shards");
    const BucketLayout& bucket = layout_.buckets[b];
    for (size_t i = 0; i < bucket.params.size(); ++i)
      sink(bucket.params[i], current.full.narrow(0, bucket.offsets[i], params_[bucket.params[i]].numel()));
    current = std::move(next);
  }
}

void GradientSync::gather_params() {
  std::vector<torch::Tensor> values;
  for (const Piece& piece : pieces_) values.push_back(params_[piece.param].detach().view({-1}).narrow(0, piece.begin, piece.numel()));
  gather(values, [this](size_t k, const torch::Tensor& flat) { params_[k].detach().view({-1}).copy_(flat); });
}

int64_t GradientSync::gradient_bytes() const {
  int64_t bytes = 0;
  for (const auto& p : params_)
    if (p.grad().defined()) bytes += static_cast<int64_t>(p.grad().nbytes());
  for (const auto& bucket : buckets_)
    for (const torch::Tensor* t : {&bucket->buffer, &bucket->part, &bucket->summed})
      if (t->defined()) bytes += static_cast<int64_t>(t->nbytes());
  return bytes;
}

}  // namespace lofi::dist
