// What differs between kinds of training — next-token prediction on token shards, image
// classification on image folders — behind one interface, so the training loop in trainer.cpp
// (batch, forward, loss, backward, reduce, clip, step, schedule) is written once for all of them.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "lofi/dist/comm.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/block_runner.h"
#include "lofi/model/deferred_weights.h"
#include "lofi/train/config.h"

namespace lofi::train {

class Task {
 public:
  virtual ~Task() = default;

  // The replica this worker trains; every node builds it from the same init.
  virtual torch::nn::Module& model() = 0;
  // Fixes STEP's node batch of NODE_BATCH samples. The choice is a pure function of (seed, node,
  // step), so every worker of a node agrees without talking, and a resumed run sees the same data.
  virtual void begin_step(int64_t step, int64_t node_batch) = 0;
  // Mean loss of samples [FIRST, FIRST + COUNT) of the current node batch (this worker's micro-batch).
  virtual torch::Tensor loss(int64_t first, int64_t count) = 0;
  // train.cuda_graphs records a micro-batch's forward and backward once and replays it: the task
  // copies each micro-batch into tensors it keeps (stage: samples [FIRST, FIRST + COUNT) of the
  // current node batch, at the same addresses every time), and staged_loss() is their mean loss,
  // what loss(FIRST, COUNT) gives. graph_refusal(): why this task's micro-batches cannot be
  // replayed (they change shape, or their loss needs a number from the host); "" where they can.
  virtual std::string graph_refusal() const;
  virtual void stage(int64_t first, int64_t count);
  virtual torch::Tensor staged_loss();
  // The tensors stage() copies into (checked to stay where a recording saw them); none before the first.
  virtual std::vector<torch::Tensor> staged() const { return {}; }
  // What the throughput counts: "tokens" per sequence for language models, 1 "images" per image.
  virtual int64_t units_per_sample() const = 0;
  virtual std::string unit() const = 0;
  // Held-out metrics for the log line (e.g. {"val_loss": 2.1}); BATCH is the evaluation batch.
  virtual bool has_validation() const = 0;
  virtual nlohmann::json validate(int64_t batch) = 0;
  // For dist.shard = "full", which keeps one decoder block's parameters whole at a time: the block
  // each of PARAMS belongs to (-1: outside the blocks), or empty where the model has no decoder
  // blocks (then "full" is refused); and the hooks around each block's forward (unset: none).
  virtual std::vector<int64_t> blocks_of(const std::vector<torch::Tensor>& params) const;
  virtual void set_block_hooks(model::BlockHooks hooks);
  // A fully sharded start (starts_sharded below): the parameters the task built without memory,
  // each with its start value, for the trainer to fill one decoder block at a time; none where the
  // task builds its model whole.
  virtual model::DeferredWeights* deferred_weights() { return nullptr; }
  // Where the model lives: batches are copied there (pinned, non-blocking on CUDA).
  void set_device(const torch::Device& device) { device_ = device; }
  const torch::Device& device() const { return device_; }
  // Extra metadata for the node's final weights (e.g. the class names of a classifier).
  virtual io::Metadata metadata() const { return {}; }
  // LP-FT's first half (train.head_init = "lp"): fits a re-initialised classification head on the
  // frozen pretrained features, identically on every node, before fine-tuning starts. Returns a
  // line saying what it did. Tasks without such a head refuse.
  virtual std::string probe_head(int64_t steps, double lr, int64_t batch);
  // A run whose model.init is a Hugging Face directory hands its result back in that form: writes
  // OUT_DIR (replacing an older one) from the lofi weights file WEIGHTS and returns true; false
  // when this run has no such form.
  virtual bool write_hf_output(const std::string& weights, const std::string& out_dir) const;

 private:
  torch::Device device_ = torch::kCPU;
};

// Whether a worker of TOPO starts fully sharded: dist.shard = "full" in a node of several workers,
// but LP-FT (which runs the whole model first). The model's decoder blocks then reach the device
// as this worker's parts, and a task that can builds them in pieces (deferred_weights).
bool starts_sharded(const Config& config, const dist::Topology& topo);

// Builds the task CONFIG describes, its model initialised from INIT_SEED (or model.init), sampling
// for TOPO's node; the trainer then places it on the device. Model families provide one
// (family/family.h).
using TaskFactory = std::function<std::unique_ptr<Task>(const Config& config, const dist::Topology& topo, uint64_t init_seed)>;

}  // namespace lofi::train
