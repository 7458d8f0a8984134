// Next-token prediction on token shards: windows of seq_len + 1 tokens drawn by the stateless
// window sampler from this node's range, and held-out loss on consecutive windows of data.val.
#pragma once
#include <memory>

#include "lofi/data/sampler.h"
#include "lofi/data/token_shards.h"
#include "lofi/family/adapters.h"
#include "lofi/model/causal_lm.h"
#include "lofi/train/task.h"

namespace lofi::family {

class LmTask : public train::Task {
 public:
  LmTask(const train::Config& config, const dist::Topology& topo, uint64_t init_seed);

  torch::nn::Module& model() override { return *model_; }
  void begin_step(int64_t step, int64_t node_batch) override;
  torch::Tensor loss(int64_t first, int64_t count) override;
  int64_t units_per_sample() const override { return seq_len_; }
  std::string unit() const override { return "tokens"; }
  bool has_validation() const override { return val_ != nullptr; }
  nlohmann::json validate(int64_t batch) override;
  // A LoRA run's outputs are PEFT adapter directories; a full fine-tune from a Hugging Face
  // directory's, that directory's form.
  bool write_hf_output(const std::string& weights, const std::string& out_dir) const override;
  io::Metadata metadata() const override { return lora_.metadata(); }

 private:
  int64_t seq_len_, eval_batches_;
  std::string precision_;
  std::string init_;  // model.init
  data::TokenShards tokens_;
  std::unique_ptr<data::TokenShards> val_;
  data::WindowSampler sampler_;
  std::vector<int64_t> starts_;  // window starts of the current node batch
  model::CausalLm model_;
  LoraRun lora_;
};

}  // namespace lofi::family
