// Image classification on an ImageFolder: a timm-layout ViT fine-tuned with DeiT's recipe
// (augmentation, mixup/CutMix, label smoothing), batches decoded ahead of the trainer by the
// threaded loader, and held-out top-1 on data.val.
#pragma once
#include <memory>

#include "lofi/data/augment.h"
#include "lofi/data/image_folder.h"
#include "lofi/data/image_loader.h"
#include "lofi/family/adapters.h"
#include "lofi/model/vit.h"
#include "lofi/train/task.h"

namespace lofi::family {

// The ViT CONFIG describes for NUM_CLASSES outputs, initialised from SEED, then from model.init
// when set (a timm checkpoint: the head is re-initialised when its classes differ, position
// embeddings are resampled when the image size differs; NOTICES receives what was adapted, and
// HEAD_REINITIALISED whether the head is new rather than model.init's).
// DEFERRED (a fully sharded full fine-tune): the blocks' linear layers built in pieces, their
// values (seeded init or model.init's tensors) left to it (model/deferred_weights.h).
model::Vit make_vit(const train::ModelConfig& config, int64_t num_classes, uint64_t seed,
                    std::vector<std::string>* notices = nullptr, bool* head_reinitialised = nullptr,
                    model::DeferredWeights* deferred = nullptr);
model::VitConfig vit_config(const train::ModelConfig& config, int64_t num_classes);
// The augmentation of CONFIG.images for a model of IMAGE_SIZE pixels.
data::AugmentConfig augment_config(const train::Config& config, int64_t image_size);

class ImageTask : public train::Task {
 public:
  ImageTask(const train::Config& config, const dist::Topology& topo, uint64_t init_seed);

  torch::nn::Module& model() override { return *model_; }
  void begin_step(int64_t step, int64_t node_batch) override;
  torch::Tensor loss(int64_t first, int64_t count) override;
  std::string graph_refusal() const override { return ""; }
  void stage(int64_t first, int64_t count) override;
  torch::Tensor staged_loss() override;
  std::vector<torch::Tensor> staged() const override { return {staged_images_, staged_targets_}; }
  int64_t units_per_sample() const override { return 1; }
  std::string unit() const override { return "images"; }
  bool has_validation() const override { return val_ != nullptr; }
  nlohmann::json validate(int64_t batch) override;
  io::Metadata metadata() const override;
  // A LoRA run's outputs are PEFT adapter directories (timm names); a full fine-tune has none.
  bool write_hf_output(const std::string& weights, const std::string& out_dir) const override;
  std::string probe_head(int64_t steps, double lr, int64_t batch) override;
  std::vector<int64_t> blocks_of(const std::vector<torch::Tensor>& params) const override {
    return model::blocks_of(model_->blocks, params);
  }
  void set_block_hooks(model::BlockHooks hooks) override { model_->block_hooks = std::move(hooks); }
  model::DeferredWeights* deferred_weights() override { return deferred_.get(); }

 private:
  void start_loader(int64_t first_step, int64_t node_batch);

  const train::Config config_;
  const dist::Topology topo_;
  data::ImageFolder train_;
  std::unique_ptr<data::ImageFolder> val_;
  data::AugmentConfig augment_;
  std::unique_ptr<model::DeferredWeights> deferred_;  // a fully sharded start's blocks, until the trainer fills them
  model::Vit model_{nullptr};
  LoraRun lora_;
  std::unique_ptr<data::ImageLoader> loader_;
  bool head_is_new_ = false;    // model.init's head had other classes: it was re-initialised
  int64_t rank_first_ = 0;      // this worker's first sample in the node batch
  int64_t loader_step_ = -1;    // the step the loader hands out next
  torch::Tensor images_;        // (B, 3, S, S) this worker's part of the step's node batch, mixed
  torch::Tensor targets_;       // (B, classes) their mixed, smoothed targets
  torch::Tensor staged_images_, staged_targets_;  // a micro-batch of them, copied where a replayed step reads it
  // Where samples [FIRST, FIRST + COUNT) of the node batch start in images_ (refused when not this worker's).
  int64_t offset_of(int64_t first, int64_t count) const;
};

}  // namespace lofi::family
