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
  // full, a block's bucket: its parameters packed (padded,) in the compute dtype, their storage
  // freed between uses; this worker's part of them (padded / workers,) fp32, which the optimizer
  // updates, and its copy in the compute dtype while a gather sends it; the gather in flight.
  torch::Tensor whole, master, sent;
  c10::intrusive_ptr<c10d::Work> gathering;
  bool is_whole = false;
};

namespace {

// T's storage freed, or given fresh memory, its sizes kept. The parameters are views of it and
// autograd's saved tensors refer to the same storage, so they see what a later gather writes
// (FSDP frees and refills its unsharded buffers by resizing their storage the same way).
void free_storage(const torch::Tensor& t) {
  c10::StorageImpl* storage = t.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(at::DataPtr(nullptr, storage->device()));
  storage->set_nbytes(0);
}

void allocate_storage(const torch::Tensor& t) {
  c10::StorageImpl* storage = t.storage().unsafeGetStorageImpl();
  const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  storage->set_data_ptr_noswap(storage->allocator()->allocate(bytes));
  storage->set_nbytes(bytes);
}

}  // namespace

// ZeRO-2's hook: runs after autograd has accumulated a parameter's gradient into .grad, hands it
// to its bucket and frees it.
struct GradientSync::AccumulatedHook : torch::autograd::PostAccumulateGradHook {
  AccumulatedHook(GradientSync* owner, size_t index) : sync(owner), param(index) {}
  void operator()(const torch::autograd::Variable& p) override { sync->on_gradient(param, p.grad()); }
  GradientSync* sync;
  size_t param;
};

GradientSync::GradientSync(Comm& comm, const std::vector<torch::Tensor>& params, const std::vector<std::string>& names,
                           const Options& options)
    : comm_(comm),
      params_(params),
      names_(names),
      group_(options.world ? comm.world_group() : comm.node_group()),
      group_size_(options.world ? comm.env().world_size : comm.topology().node_size),
      world_(options.world),
      overlap_(options.overlap && group_),
      mode_(options.mode),
      reduce_dtype_(options.reduce_dtype),
      param_dtype_(options.param_dtype) {
  const std::vector<int64_t>& units = options.units;
  const double bucket_mb = options.bucket_mb;
  if (reduce_dtype_ != torch::kFloat && !options.overlap)
    fail("internal: gradients are reduced in ", reduce_dtype_, " through the overlapped buckets only");
  if (mode_ != ShardMode::none && (!overlap_ || world_))
    fail("internal: dist.shard = \"", shard_mode_name(mode_), "\" needs a node of several workers and dist.overlap");
  if (!overlap_) return;
  const int64_t workers = mode_ == ShardMode::none ? 1 : group_size_;
  std::vector<int64_t> numels;
  for (const auto& p : params) numels.push_back(p.numel());
  if ((mode_ == ShardMode::full) != !units.empty()) fail("internal: decoder blocks are given with dist.shard = \"full\" only");
  layout_ = plan_shards(numels, static_cast<int64_t>(bucket_mb * 1024 * 1024 / 4), workers,
                        mode_ == ShardMode::none ? 0 : comm.topology().node_rank, units);
  if (mode_ != ShardMode::none) pieces_ = layout_.pieces();
  host_staged_ = mode_ != ShardMode::none && comm.device().is_cuda() && group_->getBackendName() == "gloo";
  if (mode_ == ShardMode::full && host_staged_)
    fail("dist.shard = \"full\" needs a GPU per worker (NCCL): this node's workers share one GPU through Gloo; ",
         "use dist.shard = \"gradients\" there");
  for (size_t b = 0; b < layout_.buckets.size(); ++b) {
    const BucketLayout& layout = layout_.buckets[b];
    buckets_.push_back(std::make_unique<Bucket>());
    if (!holds_parts())
      buckets_.back()->buffer = torch::zeros({layout.padded}, torch::TensorOptions().device(comm.device()).dtype(reduce_dtype_));
    if (layout.unit < 0) continue;
    const size_t unit = static_cast<size_t>(layout.unit);
    if (unit >= block_bucket_.size()) block_bucket_.resize(unit + 1, SIZE_MAX);
    if (block_bucket_[unit] != SIZE_MAX)
      fail("internal: decoder block ", unit, "'s parameters are not one run in registration order");
    block_bucket_[unit] = b;
    buckets_.back()->master = torch::zeros({layout_.part_numel(b)}, torch::TensorOptions().device(comm.device()));
  }
  for (size_t i = 0; i < block_bucket_.size(); ++i)
    if (block_bucket_[i] == SIZE_MAX) fail("internal: decoder block ", i, " has no trainable parameters");
  for (size_t k = 0; k < params.size(); ++k) {
    if (holds_parts())
      torch::autograd::impl::set_post_acc_grad_hooks(params_[k], std::make_unique<AccumulatedHook>(this, k));
    else
      hooks_.push_back(params_[k].register_hook([this, k](const torch::Tensor& grad) { on_gradient(k, grad); }));
  }
}

// The hooks capture this object: they go with it.
GradientSync::~GradientSync() {
  for (size_t k = 0; k < hooks_.size(); ++k) params_[k].remove_hook(hooks_[k]);
  if (holds_parts())
    for (auto& p : params_) torch::autograd::impl::post_acc_grad_hooks(p).reset();
}

void GradientSync::count(int64_t bytes, int64_t ring_passes) {
  if (world_) comm_.count_between_nodes(bytes, ring_passes);
  else comm_.count_within_node(bytes, ring_passes);
}

torch::Device GradientSync::buffer_device() const { return host_staged_ ? torch::Device(torch::kCPU) : comm_.device(); }

void GradientSync::before_backward(bool sync) {
  if (step_done_) micros_ = 0, step_done_ = false;
  syncing_ = overlap_ && (sync || holds_parts());
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
    bucket.buffer = torch::zeros({layout_.buckets[b].padded}, torch::TensorOptions().device(buffer_device()).dtype(reduce_dtype_));
  torch::Tensor slice = bucket_slice(bucket, k);
  slice.copy_(grad);
  if (holds_parts()) {
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
    const int64_t bytes = bucket.buffer.numel() * bucket.buffer.element_size();
    if (holds_parts()) {
      bucket.part = torch::empty({layout_.part_numel(b)}, bucket.buffer.options());
      bucket.work = group_->_reduce_scatter_base(bucket.part, bucket.buffer);
      count(bytes, /*ring_passes=*/1);
      // Every gradient of a block is in: autograd has run every node that saved its parameters.
      if (layout_.buckets[b].unit >= 0 && sharded_params_) release(b);
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
  torch::Tensor mean = bucket.part.to(comm_.device(), torch::kFloat).div_(static_cast<double>(group_size_));
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
    if (holds_parts()) {
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
    if (holds_parts())
      out.push_back(buckets_[piece.bucket]->summed.narrow(0, piece.shard_offset, piece.numel()));
    else
      out.push_back(params_[piece.param].grad().view({-1}).narrow(0, piece.begin, piece.numel()));
  }
  return out;
}

void GradientSync::gather(const std::vector<torch::Tensor>& piece_values,
                          const std::function<void(size_t, const torch::Tensor&)>& sink) {
  std::vector<size_t> all(buckets_.size());
  for (size_t b = 0; b < all.size(); ++b) all[b] = b;
  gather_buckets(piece_values, all, sink);
}

void GradientSync::gather_buckets(const std::vector<torch::Tensor>& piece_values, const std::vector<size_t>& buckets,
                                  const std::function<void(size_t, const torch::Tensor&)>& sink) {
  if (buckets.empty()) return;
  torch::NoGradGuard no_grad;
  std::vector<std::vector<size_t>> of_bucket(buckets_.size());  // piece indices by bucket
  for (size_t i = 0; i < pieces_.size(); ++i) of_bucket[pieces_[i].bucket].push_back(i);
  struct InFlight {
    torch::Tensor full;  // (padded,)
    c10::intrusive_ptr<c10d::Work> work;
  };
  torch::Dtype dtype = torch::kFloat;
  for (const auto& v : piece_values)
    if (v.defined()) dtype = v.scalar_type();
  auto launch = [&](size_t b) {
    const auto options = torch::TensorOptions().device(buffer_device()).dtype(dtype);
    torch::Tensor part = torch::zeros({layout_.part_numel(b)}, options);
    for (size_t i : of_bucket[b])
      part.narrow(0, pieces_[i].shard_offset, pieces_[i].numel()).copy_(piece_values[i].reshape({-1}));
    InFlight f{torch::empty({layout_.buckets[b].padded}, options), {}};
    f.work = group_->_allgather_base(f.full, part);
    count(f.full.numel() * f.full.element_size(), /*ring_passes=*/1);
    return f;
  };
  // Two buckets in flight at most: the next one's gather runs while this one is written out.
  InFlight current = launch(buckets[0]);
  for (size_t n = 0; n < buckets.size(); ++n) {
    const size_t b = buckets[n];
    InFlight next = n + 1 < buckets.size() ? launch(buckets[n + 1]) : InFlight{};
    comm_.wait(current.work, "all-gather of the node's shards");
    const BucketLayout& bucket = layout_.buckets[b];
    for (size_t i = 0; i < bucket.params.size(); ++i)
      sink(bucket.params[i], current.full.narrow(0, bucket.offsets[i], params_[bucket.params[i]].numel()));
    current = std::move(next);
  }
}

std::vector<size_t> GradientSync::packing_order() const {
  std::vector<size_t> order;
  for (const BucketLayout& bucket : layout_.buckets) order.insert(order.end(), bucket.params.begin(), bucket.params.end());
  return order;
}

void GradientSync::gather_params() {
  std::vector<size_t> buckets;  // full: those outside the blocks
  for (size_t b = 0; b < buckets_.size(); ++b)
    if (layout_.buckets[b].unit < 0) buckets.push_back(b);
  std::vector<torch::Tensor> values;
  for (const Piece& piece : pieces_)
    values.push_back(layout_.buckets[piece.bucket].unit >= 0
                         ? torch::Tensor()  // not gathered here
                         : params_[piece.param].detach().view({-1}).narrow(0, piece.begin, piece.numel()));
  gather_buckets(values, buckets, [this](size_t k, const torch::Tensor& flat) { params_[k].detach().view({-1}).copy_(flat); });
}

void GradientSync::shard_params(const std::function<void(const std::string& name, const torch::Tensor& param)>& fill) {
  if (mode_ != ShardMode::full) return;
  torch::NoGradGuard no_grad;
  for (size_t b : block_bucket_) {
    Bucket& bucket = *buckets_[b];
    const BucketLayout& layout = layout_.buckets[b];
    torch::Tensor packed = torch::zeros({layout.padded}, bucket.master.options());  // fp32; zeros: the padding
    for (size_t i = 0; i < layout.params.size(); ++i) {
      const torch::Tensor& p = params_[layout.params[i]];
      if (p.is_meta()) {
        if (!fill) fail("internal: ", names_[layout.params[i]], " has no value to shard");
        fill(names_[layout.params[i]], p);
      }
      packed.narrow(0, layout.offsets[i], p.numel()).copy_(p.detach().reshape({-1}));
    }
    const int64_t part = layout_.part_numel(b);
    bucket.master.copy_(packed.narrow(0, layout_.rank * part, part));  // before any rounding to the compute dtype
    bucket.whole = packed.to(param_dtype_);
    for (size_t i = 0; i < layout.params.size(); ++i) {
      torch::Tensor& p = params_[layout.params[i]];
      p.set_data(bucket.whole.narrow(0, layout.offsets[i], p.numel()).view(p.sizes()));  // the parameter's own storage goes
    }
    free_storage(bucket.whole);
  }
  sharded_params_ = true;
}

std::vector<torch::Tensor> GradientSync::block_parts() const {
  std::vector<torch::Tensor> out;
  for (const Piece& piece : pieces_) {
    const Bucket& bucket = *buckets_[piece.bucket];
    out.push_back(bucket.master.defined() ? bucket.master.narrow(0, piece.shard_offset, piece.numel()) : torch::Tensor());
  }
  return out;
}

void GradientSync::prefetch(size_t b) {
  Bucket& bucket = *buckets_[b];
  if (bucket.is_whole || bucket.gathering) return;
  allocate_storage(bucket.whole);
  bucket.sent = bucket.master.to(param_dtype_);  // the master itself under fp32
  bucket.gathering = group_->_allgather_base(bucket.whole, bucket.sent);
  count(bucket.whole.numel() * bucket.whole.element_size(), /*ring_passes=*/1);
}

void GradientSync::make_whole(size_t b) {
  Bucket& bucket = *buckets_[b];
  if (bucket.is_whole) return;
  prefetch(b);
  comm_.wait(bucket.gathering, "all-gather of a decoder block's parameters");
  bucket.gathering.reset(), bucket.sent.reset();
  bucket.is_whole = true;
}

void GradientSync::release(size_t b) {
  Bucket& bucket = *buckets_[b];
  if (bucket.gathering) comm_.wait(bucket.gathering, "all-gather of a decoder block's parameters");
  bucket.gathering.reset(), bucket.sent.reset();
  if (bucket.whole.storage().nbytes() > 0) free_storage(bucket.whole);
  bucket.is_whole = false;
}

void GradientSync::before_block(int64_t index) {
  if (!sharded_params_) return;
  make_whole(block_bucket_.at(static_cast<size_t>(index)));
  if (static_cast<size_t>(index) + 1 < block_bucket_.size()) prefetch(block_bucket_[static_cast<size_t>(index) + 1]);
}

torch::Tensor GradientSync::after_block(int64_t index, const torch::Tensor& out) {
  if (!sharded_params_) return out;
  const size_t i = static_cast<size_t>(index);
  if (torch::GradMode::is_enabled() && out.requires_grad()) {
    // Runs when the gradient of the block's output is in, before any of the block's backward.
    out.register_hook([this, i](const torch::Tensor&) {
      make_whole(block_bucket_[i]);
      if (i > 0) prefetch(block_bucket_[i - 1]);
    });
  }
  release(block_bucket_[i]);
  return out;
}

void GradientSync::finish() {
  torch::NoGradGuard no_grad;
  for (auto& p : params_) {
    p.mutable_grad().reset();
    if (p.storage().nbytes() > 0) free_storage(p);  // full: a block's are views of a freed buffer already
  }
  for (auto& bucket : buckets_)
    for (torch::Tensor* t : {&bucket->master, &bucket->summed, &bucket->whole, &bucket->buffer, &bucket->part}) t->reset();
  sharded_params_ = false;  // the hooks do nothing now
}

int64_t GradientSync::parameter_bytes() const {
  int64_t bytes = 0;
  for (size_t k = 0; k < params_.size(); ++k)
    if (!sharded_params_ || layout_.buckets[layout_.slot[k].first].unit < 0) bytes += static_cast<int64_t>(params_[k].nbytes());
  for (const auto& bucket : buckets_) {
    if (bucket->master.defined()) bytes += static_cast<int64_t>(bucket->master.nbytes());
    if (bucket->whole.defined()) bytes += static_cast<int64_t>(bucket->whole.storage().nbytes());
  }
  return bytes;
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
