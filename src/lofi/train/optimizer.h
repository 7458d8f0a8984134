// AdamW with decoupled weight decay on matrices only (never on biases, norms or 1-d tensors), run
// by LibTorch's fused kernel (at::_fused_adamw_, on CPU and CUDA: what torch.optim.AdamW(fused=True)
// calls), and its state to and from named tensors so a checkpoint resumes exactly on any device.
// The state lives on the parameters' device; master weights and moments stay fp32 under bf16
// autocast. With train.param_dtype = "bf16" (compute_in) the parameters themselves are bf16 and
// each keeps an fp32 master copy here (its piece only, when sharded): AdamW updates the master
// from an fp32 copy of the gradient and writes it back to the bf16 parameter, so updates smaller
// than bf16's resolution accumulate instead of rounding away (DeepSpeed's bf16 optimizer, FSDP's
// MixedPrecisionPolicy(param_dtype=bf16) over fp32 sharded parameters).
// Sharded (dist.shard, ZeRO), a worker updates only its pieces of the parameters
// (dist/shard_layout.h) and keeps state for those alone; the kernel is elementwise, so a piece's
// update is the one the whole parameter's would give it.
#pragma once
#include <torch/torch.h>

#include <functional>
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

// Where Optimizer::load_state finds a checkpoint's AdamW state: one file of whole tensors
// (Optimizer::state()'s), or the files of a node that shards it, one per worker
// (train/checkpoint.h). READ gives the elements [begin, end) of the flat state tensor NAME
// ("w.exp_avg") of a parameter of shape SHAPE; STEP the parameter's step count. Both throw naming
// the file when the checkpoint lacks them or they do not fit.
struct StateReader {
  std::string source;  // the file or files, for errors
  std::function<torch::Tensor(const std::string& name, int64_t begin, int64_t end, at::IntArrayRef shape)> read;
  std::function<int64_t(const std::string& param)> step;
};
// The reader of one file of whole tensors.
StateReader state_reader(const io::SafetensorsFile& file);

class Optimizer {
 public:
  Optimizer(const torch::nn::Module& module, const TrainConfig& config);

  // From now on update only PIECES of params() (each piece indexes params()); call before the
  // first step or load_state. VALUES (optional, one per piece): where a piece's values live when
  // not in its parameter (dist.shard = "full": this worker's part of a block's bucket).
  void shard(const std::vector<dist::Piece>& pieces, const std::vector<torch::Tensor>& values = {});
  bool sharded() const { return sharded_; }
  // From now on the trainable parameters compute in DTYPE (bf16): each piece without values of its
  // own keeps an fp32 master copy of its current values, and every parameter not yet in DTYPE is
  // cast to it (a fully sharded block's are already: dist/grad_sync.h). Call after shard() and
  // load_state(), before the first step.
  void compute_in(torch::Dtype dtype);
  // Whether the optimizer keeps master copies that it writes back to lower-precision parameters.
  bool keeps_masters() const;
  // Unsharded with masters: each parameter's fp32 master (as "NAME", the parameter's shape), what
  // a checkpoint holds of it.
  io::NamedTensors masters() const;
  // Every piece's current values (sharded): its master, or a flat view of its parameter's piece.
  std::vector<torch::Tensor> piece_values() const;

  void set_lr(double lr);
  // train.cuda_graphs: from now on what a step reads stays at one address, as a replay of a
  // captured step needs: zero_grad() zeroes the gradients in place (they stay allocated between
  // steps, one copy of the trainable parameters more outside backward), and the learning rate is
  // an fp32 tensor on the parameters' device (what the kernel reads on a GPU), filled by set_lr().
  void hold_for_graphs();
  // One AdamW update of every parameter (or piece) that has a gradient: its .grad, or GRADS (one
  // per piece, when sharded). FOUND_INF (a () fp32 tensor on the parameters' device, optional):
  // where it holds 1 the update is skipped on the device, state and step counts unchanged (as
  // torch.optim.AdamW(fused=True) under a GradScaler), with no host sync.
  void step(const torch::Tensor& found_inf = {}, const std::vector<torch::Tensor>& grads = {});
  // Drops the gradients (as LibTorch's set_to_none), so the next backward writes fresh ones;
  // after hold_for_graphs(), zeroes them in place.
  void zero_grad();
  const std::vector<NamedParam>& params() const { return params_; }

  // State as "NAME.exp_avg" / "NAME.exp_avg_sq" tensors plus each parameter's step in metadata.
  // Unsharded only: a sharded node's workers each save their pieces (shard_state).
  io::NamedTensors state(io::Metadata& metadata) const;
  // Sharded: this worker's pieces' state as flat "NAME.exp_avg" / "NAME.exp_avg_sq" tensors, with
  // "NAME.range" (the piece's first and past-the-end elements of the flat parameter, "b,e") and
  // "NAME.step" in metadata: one worker's file of a sharded checkpoint.
  io::NamedTensors shard_state(io::Metadata& metadata) const;
  // The state READER finds: each parameter or piece takes its elements, whatever the sharding it
  // was saved under.
  void load_state(const StateReader& reader);
  void load_state(const io::SafetensorsFile& file) { load_state(state_reader(file)); }

  // Sharded: each piece's "exp_avg" or "exp_avg_sq" (flat; zeros before the first step), and the
  // step count they share (every piece of a sharded node is updated at every step).
  std::vector<torch::Tensor> piece_state(const std::string& which) const;
  int64_t steps_taken() const;
  // Bytes of optimizer state this worker holds.
  int64_t state_bytes() const;
  // Bytes of master copies this worker holds (compute_in; not those in a fully sharded block's bucket).
  int64_t master_bytes() const;
  // Training is over: the state and the pieces' own values go (no step may follow).
  void release();
  // Training is over, unsharded with masters: each parameter becomes its fp32 master (its
  // lower-precision values go), and the state goes (no step may follow).
  void release_into_params();

 private:
  struct Slot {
    size_t param = 0;
    int64_t begin = 0, end = -1;  // the piece's flat elements; end -1: the whole parameter
    torch::Tensor exp_avg, exp_avg_sq, step;  // like the piece; step: () fp32, as PyTorch's fused path
    torch::Tensor master;  // the piece's values when they live outside the parameter (flat, or the parameter's shape)
    bool writes_back = false;  // master is this optimizer's fp32 copy, written back to the parameter after each step
    bool decay = false;
  };
  // The elements SLOT updates: its master, or the parameter itself, or a flat view of its piece.
  torch::Tensor values(const Slot& slot) const;
  // The parameter's own elements for SLOT: the parameter, or a flat view of its piece.
  torch::Tensor param_view(const Slot& slot) const;
  std::vector<NamedParam> params_;
  std::vector<Slot> slots_;  // one per parameter (or piece); undefined tensors until its first step
  bool sharded_ = false;
  TrainConfig config_;
  double lr_;
  torch::Tensor lr_on_device_;  // () fp32 (hold_for_graphs), else undefined
  bool holds_grads_ = false;
};

}  // namespace lofi::train
