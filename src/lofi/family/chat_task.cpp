#include "lofi/family/chat_task.h"

#include <cstdio>

#include "lofi/data/token_shards.h"
#include "lofi/dist/device.h"
#include "lofi/error.h"

namespace lofi::family {

ChatTask::ChatTask(const train::Config& config, const dist::Topology& topo, uint64_t init_seed)
    : LmTaskBase(config, topo, init_seed),
      samples_(data::split_paths(config.data.train), config.model.vocab_size),
      rows_(samples_, seq_len_, config.data.packing, config.data.overlong, config.data.train),
      seed_(static_cast<uint64_t>(config.train.seed)),
      node_(topo.node),
      nodes_(topo.nodes),
      split_(config.dist.data_split) {
  if (!config.data.val.empty()) {
    val_samples_ = std::make_unique<data::ChatSamples>(data::split_paths(config.data.val), config.model.vocab_size);
    val_rows_ = std::make_unique<data::PackedChat>(*val_samples_, seq_len_, config.data.packing, config.data.overlong, config.data.val);
  }
  if (topo.node == 0 && topo.node_rank == 0) {
    std::printf("data: %s\n", rows_.summary().c_str());
    if (val_rows_) std::printf("data.val: %s\n", val_rows_->summary().c_str());
  }
}

void ChatTask::begin_step(int64_t step, int64_t node_batch) {
  if (!order_ || node_batch != node_batch_) {
    if (split_ == "shard" && rows_.rows() < nodes_)
      fail("data.train: ", rows_.rows(), " rows of samples cannot be split among ", nodes_, " nodes (dist.data_split = \"shard\")");
    order_.emplace(rows_.rows(), node_batch, seed_, node_, nodes_, split_);
    node_batch_ = node_batch;
  }
  batch_rows_ = (*order_)(step);
  node_targets_ = 0;
  for (int64_t r : batch_rows_) node_targets_ += rows_.targets(r);
}

std::pair<torch::Tensor, int64_t> ChatTask::rows_loss(const data::PackedChat& chat, const std::vector<int64_t>& rows) {
  data::ChatBatch b = chat.batch(rows);
  const torch::Tensor tokens = dist::to_device(b.tokens, device()), targets = dist::to_device(b.targets, device());
  // A row of one sample (unpacked) needs no mask: padding follows it, and causal attention keeps
  // the sample from seeing it.
  const torch::Tensor segments = dist::to_device(b.segments, device());
  const model::Packing packing = chat.packed() ? model::pack_rows(segments) : model::Packing{};
  // Padding (segment -1) routed through a mixture of experts is left out of its load-balancing loss.
  return {model_->loss(tokens, targets, packing, segments.ge(0)), b.targets_kept};
}

torch::Tensor ChatTask::loss(int64_t first, int64_t count) {
  const std::vector<int64_t> rows(batch_rows_.begin() + first, batch_rows_.begin() + first + count);
  auto [mean, kept] = rows_loss(rows_, rows);
  // The trainer divides by the micro-batches and the node's workers average their gradients, so
  // a micro-batch's share (node_batch / count of them in all) is its tokens' sum over the node's.
  const double scale = node_targets_ > 0 ? static_cast<double>(kept) * static_cast<double>(node_batch_) /
                                               (static_cast<double>(count) * static_cast<double>(node_targets_))
                                         : 0.0;
  return mean * scale;
}

double ChatTask::val_loss(int64_t batch) {
  dist::PrecisionGuard precision(device(), precision_);
  torch::NoGradGuard no_grad;
  const bool training = model_->is_training();
  model_->eval();
  const int64_t rows = std::min(val_rows_->rows(), eval_batches_ * batch);
  double sum = 0;
  int64_t kept_all = 0;
  for (int64_t first = 0; first < rows; first += batch) {
    std::vector<int64_t> chunk;
    for (int64_t r = first; r < std::min(rows, first + batch); ++r) chunk.push_back(r);
    auto [mean, kept] = rows_loss(*val_rows_, chunk);
    sum += mean.item<double>() * static_cast<double>(kept);
    kept_all += kept;
  }
  model_->train(training);
  return kept_all > 0 ? sum / static_cast<double>(kept_all) : 0.0;
}

}  // namespace lofi::family
