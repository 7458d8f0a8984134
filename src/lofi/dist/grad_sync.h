// Gradient averaging inside a node, overlapped with backward: gradients are packed into ~25 MB
// buckets (dist/shard_layout.h: in reverse registration order, the order backward produces them)
// and each full bucket's collective starts while backward is still running.
// These hooks do the job of c10d::Reducer (the engine under PyTorch's DistributedDataParallel) on
// the node's process group (NCCL on GPU, Gloo on CPU), with lofi's byte counting and its errors
// naming the parameter that got no gradient; the buckets live on the worker's device.
//
// dist.shard (ZeRO) changes what each worker keeps:
// - none: every bucket is all-reduced and each worker holds every averaged gradient. With gradient
//   accumulation only the last micro-batch's backward synchronises (DDP's no_sync).
// - optimizer (ZeRO-1): the same all-reduce; each worker then updates only its pieces
//   (pieces(), piece_grads()) and gather_params() all-gathers the updated weights.
// - gradients (ZeRO-2): each micro-batch's gradients are reduce-scattered, so a worker receives
//   only its part of each bucket's sum and accumulates it there; a parameter's full gradient lives
//   from autograd's accumulation until its bucket takes it (a post-accumulate hook frees it, as
//   FSDP2 does), and a bucket's buffer only until its reduce-scatter is done (two in flight).
// - full (ZeRO-3): as gradients, and each decoder block's parameters live whole only while the
//   block runs: a worker keeps its fp32 part of the block's bucket (the master the optimizer
//   updates), and the block's hooks (model/block_runner.h) all-gather the bucket before its forward
//   and again before its backward (a hook on the block's output gradient), the next block's gather
//   launched while this one runs, and free it after (the backward's free comes when the bucket's
//   reduce-scatter starts), as FSDP does. Parameters outside the blocks (embeddings, final norm,
//   head) stay whole, as FSDP's root module does; their updates are all-gathered after the step.
// Where a node's workers share a GPU (Gloo on CUDA tensors), the sharded collectives run on host
// copies, as Gloo needs (full refuses that).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lofi/dist/comm.h"
#include "lofi/dist/shard_layout.h"

namespace lofi::dist {

class GradientSync {
 public:
  struct Options {
    // false: one flat all-reduce after backward instead (the simple reference path; only with
    // ShardMode::none and fp32).
    bool overlap = true;
    double bucket_mb = 25;
    // A node of one worker has nothing to shard: none there.
    ShardMode mode = ShardMode::none;
    // Over every worker of the job instead of the node's (a shared warm start,
    // dist.warm_start_steps: all nodes as one data-parallel node; ShardMode::none only), its
    // bytes counted as between nodes.
    bool world = false;
    // full only: each parameter's block (-1: outside the blocks), every block's parameters
    // consecutive.
    std::vector<int64_t> units;
    // What the buckets are reduced in (dist.reduce_dtype): fp32, or bf16 (half the bytes; each
    // micro-batch's gradients and their sums rounded to bf16); the averages come back in fp32.
    torch::Dtype reduce_dtype = torch::kFloat;
    // full only: what a block's parameters are gathered and computed in (train.param_dtype); this
    // worker's part of them stays fp32 (the master the optimizer updates).
    torch::Dtype param_dtype = torch::kFloat;
  };
  GradientSync(Comm& comm, const std::vector<torch::Tensor>& params, const std::vector<std::string>& names,
               const Options& options);
  ~GradientSync();

  // Call before and after each micro-batch's backward; SYNC marks the last one of the step. After
  // the last, none and optimizer hold the averages in .grad, gradients in piece_grads().
  void before_backward(bool sync);
  void after_backward(bool sync);
  // Buckets whose collective has started in the current backward (tests observe the overlap).
  size_t buckets_launched() const { return next_launch_; }

  ShardMode mode() const { return mode_; }
  // Whether a worker keeps only its parts of the gradients (gradients, full).
  bool holds_parts() const { return mode_ == ShardMode::gradients || mode_ == ShardMode::full; }
  const ShardLayout& layout() const { return layout_; }
  // This worker's pieces (sharded modes) and their averaged gradients after the last backward:
  // views of .grad (optimizer) or of this worker's accumulated parts (gradients).
  const std::vector<Piece>& pieces() const { return pieces_; }
  std::vector<torch::Tensor> piece_grads() const;
  // Every worker's PIECE_VALUES (one per piece, as pieces(); all of one dtype) all-gathered bucket
  // by bucket in their dtype, two buckets in flight; SINK gets each parameter's full flat values,
  // in packing_order(). Every worker must call it.
  void gather(const std::vector<torch::Tensor>& piece_values,
              const std::function<void(size_t param, const torch::Tensor& flat)>& sink);
  // The parameters (indices of the constructor's PARAMS) in the order gather() hands them out.
  std::vector<size_t> packing_order() const;
  // After the update of this worker's pieces: every worker's updated pieces into every replica, in
  // the parameters' dtype (full: the parameters outside the blocks; the blocks' are gathered when
  // they run).
  void gather_params();

  // full: call once the weights are loaded. Keeps this worker's part of each block's parameters
  // and frees the rest; from then on the parameters are views of their block's buffer, whole only
  // between before_block and the bucket's reduce-scatter (or after_block, without a backward).
  // A parameter on the meta device (a start built in pieces) is first given its value by FILL,
  // on the host, as its block is packed: one block whole at a time.
  void shard_params(const std::function<void(const std::string& name, const torch::Tensor& param)>& fill = {});
  // full: where the optimizer updates each piece: a view of this worker's part of a block's
  // bucket, or undefined (the parameter itself, outside the blocks).
  std::vector<torch::Tensor> block_parts() const;
  // Whether the parameters are sharded (full, after shard_params()).
  bool shards_params() const { return sharded_params_; }
  // full: block INDEX's hooks (model::BlockHooks): its parameters whole before its forward, the
  // next block's gather started; after, a hook on OUT's gradient that gathers them again (and the
  // block before) for the backward, and the block's buffer freed.
  void before_block(int64_t index);
  torch::Tensor after_block(int64_t index, const torch::Tensor& out);
  // Training is over (the optimizer has released its state; the final weights are gathered and
  // written): this worker's parts, buffers and gradients are freed, and so is every parameter's
  // storage (their shapes stay), given again only where a model is needed whole
  // (model::materialize_parameters).
  void finish();
  // Bytes of parameters this worker holds between steps (full: its parts of the blocks' and the
  // whole parameters outside them).
  int64_t parameter_bytes() const;
  // Bytes of gradients this worker holds between steps (.grad, buckets, accumulated parts).
  int64_t gradient_bytes() const;

 private:
  struct Bucket;
  struct AccumulatedHook;
  void on_gradient(size_t param, const torch::Tensor& grad);
  void launch_ready_buckets();
  void settle(size_t bucket);
  torch::Tensor bucket_slice(Bucket& bucket, size_t param);
  torch::Device buffer_device() const;
  void count(int64_t bytes, int64_t ring_passes);
  void gather_buckets(const std::vector<torch::Tensor>& piece_values, const std::vector<size_t>& buckets,
                      const std::function<void(size_t param, const torch::Tensor& flat)>& sink);
  // full: block bucket B's all-gather started (prefetch), waited for (make_whole), its buffer freed.
  void prefetch(size_t b);
  void make_whole(size_t b);
  void release(size_t b);

  Comm& comm_;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  c10::intrusive_ptr<c10d::Backend> group_;  // the node's, or the world's
  int64_t group_size_ = 1;
  bool world_;
  bool overlap_;
  ShardMode mode_;
  torch::Dtype reduce_dtype_;
  torch::Dtype param_dtype_;
  bool host_staged_ = false;  // sharded collectives on host copies (Gloo over CUDA tensors)
  bool syncing_ = false, step_done_ = false;
  int64_t micros_ = 0;  // micro-batches accumulated this step (gradients)
  ShardLayout layout_;
  std::vector<Piece> pieces_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<unsigned> hooks_;  // pre-accumulation hook handles, one per parameter (none, optimizer)
  size_t next_launch_ = 0;
  std::vector<size_t> block_bucket_;  // full: decoder block -> its bucket
  bool sharded_params_ = false;       // full, after shard_params()
};

}  // namespace lofi::dist
