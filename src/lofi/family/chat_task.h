// Fine-tuning on chat data (lofi prepare --chat): rows of packed (or padded) samples drawn in
// epochs by the node's shuffled order; attention kept inside each sample and positions restarted
// per sample (model::Packing); the loss averaged over the trained tokens of the whole node batch,
// not per row or per micro-batch, so packing, padding, gradient accumulation and the number of
// workers give the same gradient. Held-out loss on data.val's rows, averaged the same way.
#pragma once
#include <memory>
#include <optional>

#include "lofi/data/chat_samples.h"
#include "lofi/data/image_sampler.h"
#include "lofi/data/packed_chat.h"
#include "lofi/family/lm_task.h"

namespace lofi::family {

class ChatTask : public LmTaskBase {
 public:
  ChatTask(const train::Config& config, const dist::Topology& topo, uint64_t init_seed);

  // The node batch's rows, and how many trained tokens they hold in all.
  void begin_step(int64_t step, int64_t node_batch) override;
  // The micro-batch's share of the node batch's token mean (see above).
  torch::Tensor loss(int64_t first, int64_t count) override;
  std::string graph_refusal() const override {
    return "chat data's rows are packed anew for each batch, and each micro-batch's loss is weighed by its share of "
           "the node batch's trained tokens, a number of the host";
  }

 private:
  bool has_val_data() const override { return val_rows_ != nullptr; }
  // The mean over the trained tokens of data.val's first train.eval_batches x BATCH rows.
  double val_loss(int64_t batch) override;
  // Mean loss of ROWS' trained tokens and how many there are.
  std::pair<torch::Tensor, int64_t> rows_loss(const data::PackedChat& chat, const std::vector<int64_t>& rows);

  data::ChatSamples samples_;
  data::PackedChat rows_;
  std::unique_ptr<data::ChatSamples> val_samples_;
  std::unique_ptr<data::PackedChat> val_rows_;
  uint64_t seed_;
  int64_t node_, nodes_;
  std::string split_;
  std::optional<data::ImageSampler> order_;  // the node's epochs of rows (any index set: not only images)
  int64_t node_batch_ = 0, node_targets_ = 0;
  std::vector<int64_t> batch_rows_;  // rows of the current node batch
};

}  // namespace lofi::family
