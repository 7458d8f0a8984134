// AdamW with decoupled weight decay on matrices only (never on biases, norms or 1-d tensors), run
// by LibTorch's fused kernel (at::_fused_adamw_, on CPU and CUDA: what torch.optim.AdamW(fused=True)
// calls), and its state to and from named tensors so a checkpoint resumes exactly on any device.
// The state lives on the parameters' device; master weights and moments stay fp32 under bf16.
// Sharded (dist.shard, ZeRO), a worker updates only its pieces of the parameters
// (dist/shard_layout.h) and keeps state for those alone; the kernel is elementwise, so a piece's
// update is the one the whole parameter's would give it.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

#include "lofi/dist/comm.h"
#include "lofi/dist/shard_layout.h"
#include "lofi/io/safetensors.h"
#include "lofi/train/config.h"

namespace lofi::train {

struct NamedParam {
  std::string name;
  torch::Tensor param;
};

// Scales the gradients of PARAMS so their global L2 norm is at most MAX_NORM, as PyTorch's
// clip_grad_norm_(foreach=True): a few multi-tensor kernels and no device-to-host sync (LibTorch's
// C++ clip_grad_norm_ walks the tensors one by one and reads the norm back every step).
// Returns the global norm before clipping (a 0-dim tensor on the gradients' device).
torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);
// The global L2 norm of the gradients, without clipping.
torch::Tensor grad_norm(const std::vector<torch::Tensor>& params);
// The same where a node's workers each hold a part of the gradients (dist.shard = "gradients"):
// PIECE_GRADS are this worker's; the squared norms are summed over the node through COMM (every
// worker must call it), then the parts clipped to MAX_NORM when it is > 0. Returns the node's norm.
torch::Tensor clip_sharded_grad_norm(const std::vector<torch::Tensor>& piece_grads, dist::Comm& comm, double max_norm);

class Optimizer {
 public:
  Optimizer(const torch::nn::Module& module, const TrainConfig& config);

  // From now on update only PIECES of params() (each piece indexes params()); call before the
  // first step or load_state. VALUES (optional, one per piece): where a piece's values live when
  // not in its parameter (dist.shard = "full": this worker's part of a block's bucket).
  void shard(const std::vector<dist::Piece>& pieces, const std::vector<torch::Tensor>& values = {});
  bool sharded() const { return sharded_; }

  void set_lr(double lr) { lr_ = lr; }
  // One AdamW update of every parameter (or piece) that has a gradient: its .grad, or GRADS (one
  // per piece, when sharded). FOUND_INF (a () fp32 tensor on the parameters' device, optional):
  // where it holds 1 the update is skipped on the device, state and step counts unchanged (as
  // torch.optim.AdamW(fused=True) under a GradScaler), with no host sync.
  void step(const torch::Tensor& found_inf = {}, const std::vector<torch::Tensor>& grads = {});
  // Drops the gradients (as LibTorch's set_to_none), so the next backward writes fresh ones.
  void zero_grad();
  const std::vector<NamedParam>& params() const { return params_; }

  // State as "NAME.exp_avg" / "NAME.exp_avg_sq" tensors plus each parameter's step in metadata.
  // Unsharded only: a sharded node gathers its workers' pieces (train/sharded_state.h).
  io::NamedTensors state(io::Metadata& metadata) const;
  // The whole state's file: each piece takes its part.
  void load_state(const io::SafetensorsFile& file);

  // Sharded: each piece's "exp_avg" or "exp_avg_sq" (flat; zeros before the first step), and the
  // step count they share (every piece of a sharded node is updated at every step).
  std::vector<torch::Tensor> piece_state(const std::string& which) const;
  int64_t steps_taken() const;
  // Bytes of optimizer state this worker holds.
  int64_t state_bytes() const;
  // Training is over: the state and the pieces' own values go (no step may follow).
  void release();

 private:
  struct Slot {
    size_t param = 0;
    int64_t begin = 0, end = -1;  // the piece's flat elements; end -1: the whole parameter
    torch::Tensor exp_avg, exp_avg_sq, step;  // like the piece; step: () fp32, as PyTorch's fused path
    torch::Tensor master;  // the piece's values when they live outside the parameter (flat)
    bool decay = false;
  };
  // The parameter elements SLOT updates: the parameter itself, or a flat view of its piece.
  torch::Tensor values(const Slot& slot) const;
  std::vector<NamedParam> params_;
  std::vector<Slot> slots_;  // one per parameter (or piece); undefined tensors until its first step
  bool sharded_ = false;
  TrainConfig config_;
  double lr_;
};

}  // namespace lofi::train
