// The memory plan: what one worker will hold at its peak, from the config alone, before anything is
// loaded: weights, gradients, AdamW state, activations (from the shape, micro-batch, sequence,
// activation checkpointing and LoRA) and the loss head's buffers, against the memory its device
// gives it. A run that will not fit is refused before it starts, naming the knobs that make it fit
// and what each would bring the peak to. `lofi plan` prints the same table.
//
// The peak is the largest of the moments that bound a run: the start (every worker builds the whole
// model, its trainable weights in fp32, before it shards them or rounds them to bf16; a fully
// sharded GPU worker builds it on the host and sends the device its parts of the blocks), the end of
// the forward pass (every
// saved activation and the loss head's buffers live) and the end of the backward pass (every
// gradient written, one block's activations left); and, where they are larger, a checkpoint (a
// node that shards its parameters or their masters gathers them two fp32 buckets at a time as its
// leader writes them) and the end of a lo-fi job of such nodes with data.val (its merging leader
// evaluates each node's final whole, in fp32). Each worker holds the weights (trainable in
// fp32; a LoRA run's frozen base in model.dtype), AdamW's two fp32 moments for what it updates,
// and the gradient buffers its dist.shard mode keeps (dist/grad_sync.h). Fully sharded (dist.shard =
// "full"), a worker holds the parameters outside the blocks whole, its 1/G of the blocks' and two
// blocks gathered at once (the one running and the next one's prefetch).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lofi/train/config.h"

namespace lofi::train {

// What a model family says of its model under a config (family/lm_footprint.h for language models).
struct ModelFootprint {
  std::string shape;              // e.g. "llama, 16 layers, d_model 2048"
  int64_t trainable = 0;          // parameters that train: fp32, gradients, AdamW state
  int64_t frozen = 0;             // a LoRA run's frozen base parameters
  int64_t frozen_bytes = 4;       // bytes of each frozen parameter (model.dtype)
  int64_t largest_param = 0;      // elements of the largest trainable tensor
  int64_t blocks = 0;             // decoder blocks (dist.shard = "full" gathers one at a time); 0: none
  int64_t block_trainable = 0;    // trainable parameters of one block
  double activations = 0;         // bytes one micro-batch's forward keeps for backward (as checkpointed)
  double block_activations = 0;   // bytes one block keeps (what a backward or a recompute holds at once)
  double loss_head = 0;           // bytes the loss head holds at the end of the forward pass
  double weight_copies = 0;       // bytes of compute-dtype copies of the weights (bf16 autocast's cache)
  bool builds_in_pieces = false;  // a fully sharded start builds the blocks' parameters one block at a time (Task::deferred_weights)
};

struct MemoryPlan {
  struct Line {
    std::string what;   // "weights"
    double bytes = 0;
    std::string note;   // "1.24 B trainable in fp32"
  };
  std::string shape;                 // the footprint's
  std::string layout;                // "1 node x 4 workers, dist.shard = \"none\", micro-batch 2 x 2048"
  std::vector<Line> lines;           // per worker
  double peak = 0;                   // bytes per worker
  double available = 0;              // bytes the worker's device gives it (0: unknown)
  std::string device;                // "cuda:0 (80.0 GB, shared by 2 workers)"
  struct Knob {
    std::string setting;  // "--set dist.shard=gradients"
    double peak = 0;      // the peak it would give
  };
  std::vector<Knob> knobs;           // settings that lower the peak, lowest first

  bool fits() const { return available <= 0 || peak <= available; }
};

struct PlanPlace {
  int64_t node_workers = 1;  // G
  double available = 0;      // bytes per worker; 0: unknown
  std::string device;
  // What a worker holds besides its tensors: on CPU, LibTorch's code, thread pools and allocator
  // slack (measured: a tiny run's peak resident memory, ~0.36 GB); on a GPU, the CUDA context and
  // cuBLAS's workspaces.
  double runtime_bytes = 0.36e9;
};

// FOOTPRINT_OF gives a config's footprint at a micro-batch (its model family's); the knobs are
// planned through it.
using FootprintOf = std::function<ModelFootprint(const Config&, int64_t micro_batch)>;
MemoryPlan plan_memory(const Config& config, const PlanPlace& place, const FootprintOf& footprint_of);
// The samples per micro-batch of one worker of a node of NODE_WORKERS: the plan's.
int64_t micro_batch(const Config& config, int64_t node_workers);

// The table `lofi plan` prints.
std::string format_memory_plan(const MemoryPlan& plan);
// One line for a run's start: "memory plan: 3.1 GB per worker of 20.0 GB (cpu) ...".
std::string memory_plan_line(const MemoryPlan& plan);
// Fails, before anything is loaded, when PLAN does not fit: the numbers and the knobs.
void refuse_unless_fits(const MemoryPlan& plan);

}  // namespace lofi::train
