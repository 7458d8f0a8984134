// Next-token prediction on token shards: windows of seq_len + 1 tokens drawn by the stateless
// window sampler from this node's range, and held-out loss on consecutive windows of data.val.
// (Chat data, with its loss masks and packed samples, is chat_task.h's.)
#pragma once
#include <memory>

#include "lofi/data/sampler.h"
#include "lofi/data/token_shards.h"
#include "lofi/data/tokenizer.h"
#include "lofi/eval/task_accuracy.h"
#include "lofi/family/adapters.h"
#include "lofi/model/causal_lm.h"
#include "lofi/train/task.h"

namespace lofi::family {

// What the language-model tasks share: the model (model.init, or random from the seed), its LoRA
// adapter, and the outputs in Hugging Face's or PEFT's form.
class LmTaskBase : public train::Task {
 public:
  LmTaskBase(const train::Config& config, const dist::Topology& topo, uint64_t init_seed);

  torch::nn::Module& model() override { return *model_; }
  int64_t units_per_sample() const override { return seq_len_; }
  std::string unit() const override { return "tokens"; }
  // A LoRA run's outputs are PEFT adapter directories; a full fine-tune from a Hugging Face
  // directory's, that directory's form.
  bool write_hf_output(const std::string& weights, const std::string& out_dir) const override;
  io::Metadata metadata() const override { return lora_.metadata(); }
  bool has_validation() const override { return has_val_data() || val_task_ != nullptr; }
  // {"val_loss": held-out loss on data.val, "val_acc": accuracy on data.val_task}, those given.
  nlohmann::json validate(int64_t batch) override;
  std::vector<int64_t> blocks_of(const std::vector<torch::Tensor>& params) const override;
  void set_block_hooks(model::BlockHooks hooks) override { model_->block_hooks = std::move(hooks); }
  model::DeferredWeights* deferred_weights() override { return deferred_.get(); }

 protected:
  virtual bool has_val_data() const = 0;
  virtual double val_loss(int64_t batch) = 0;

  int64_t seq_len_, eval_batches_;
  std::string precision_;
  std::string init_;  // model.init
  std::unique_ptr<model::DeferredWeights> deferred_;  // a fully sharded start's blocks, until the trainer fills them
  model::CausalLm model_;
  LoraRun lora_;

 private:
  std::unique_ptr<data::Tokenizer> task_tokenizer_;  // the scorer refers to it
  std::unique_ptr<eval::TaskScorer> val_task_;
};

// Next-token prediction on token shards.
class LmTask : public LmTaskBase {
 public:
  LmTask(const train::Config& config, const dist::Topology& topo, uint64_t init_seed);

  void begin_step(int64_t step, int64_t node_batch) override;
  torch::Tensor loss(int64_t first, int64_t count) override;
  std::string graph_refusal() const override { return ""; }
  void stage(int64_t first, int64_t count) override;
  torch::Tensor staged_loss() override;
  std::vector<torch::Tensor> staged() const override { return {window_}; }

 private:
  bool has_val_data() const override { return val_ != nullptr; }
  double val_loss(int64_t batch) override;

  data::TokenShards tokens_;
  std::unique_ptr<data::TokenShards> val_;
  data::WindowSampler sampler_;
  std::vector<int64_t> starts_;  // window starts of the current node batch
  torch::Tensor window_;         // (B, T + 1) on the device: the staged micro-batch's tokens
};

}  // namespace lofi::family
