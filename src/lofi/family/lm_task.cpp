#include "lofi/family/lm_task.h"

#include <cstdio>
#include <filesystem>

#include "lofi/data/chat_template.h"
#include "lofi/data/tokenizer.h"
#include "lofi/dist/device.h"
#include "lofi/error.h"
#include "lofi/eval/perplexity.h"
#include "lofi/family/built_in_pieces.h"
#include "lofi/family/export.h"
#include "lofi/family/lm_model.h"
#include "lofi/io/hf_dir_files.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/model/hf.h"

namespace lofi::family {

LmTaskBase::LmTaskBase(const train::Config& config, const dist::Topology& topo, uint64_t init_seed)
    : seq_len_(config.data.seq_len),
      eval_batches_(config.train.eval_batches),
      precision_(config.train.precision),
      init_(config.model.init),
      deferred_(weights_built_in_pieces(config, topo)),
      model_(make_lm(config.model, init_seed, deferred_.get())) {
  // data.val serves the periodic evaluation (train.eval_every) and a lo-fi job's averaging check.
  if (config.train.eval_every > 0 && config.data.val.empty() && config.data.val_task.empty())
    fail("config: train.eval_every > 0 needs data.val or data.val_task");
  // A pretrained directory's tokenizer is copied into final-hf and merged-hf: one that does not
  // load is refused now, not found broken by whoever loads the fine-tuned model.
  if (model::is_hf_model_dir(init_)) {
    bool has_tokenizer = false;
    // (A SentencePiece tokenizer.model alone is carried over as it is; lofi reads tokenizer.json.)
    for (const auto& f : io::hf_tokenizer_files())
      has_tokenizer |= f != "tokenizer.model" && std::filesystem::exists(init_ + "/" + f);
    if (has_tokenizer) {
      try {
        data::Tokenizer::load(init_);
      } catch (const std::exception& e) {
        fail("model.init ", init_, ": its tokenizer (copied into the run's Hugging Face outputs) does not load: ", e.what());
      }
    }
  }
  if (!config.data.val_task.empty()) {
    const std::string dir = find_tokenizer_dir(init_, "");
    if (dir.empty())
      fail("data.val_task needs the model's tokenizer: model.init must be a Hugging Face directory (or a run's weights made "
           "from one); found \"", init_, "\"");
    task_tokenizer_ = std::make_unique<data::Tokenizer>(data::Tokenizer::load(dir));
    val_task_ = std::make_unique<eval::TaskScorer>(eval::read_task("data.val_task", config.data.val_task), *task_tokenizer_,
                                                   data::stop_token_ids(*task_tokenizer_, dir), config.model.max_seq_len,
                                                   eval::TaskOptions{});
  }
  if (config.train.activation_checkpointing > 0) {
    const model::LmConfig& c = model_->config;
    for (double p : {c.dropout, c.attention_dropout, c.embedding_dropout})
      if (p > 0)
        fail("train.activation_checkpointing recomputes blocks in backward, which would draw other dropout masks; the model has ",
             "dropout ", p, " (model.dropout, attention_dropout, embedding_dropout): set them to 0, or checkpointing to 0");
    if (config.lora.rank > 0 && config.lora.dropout > 0)
      fail("train.activation_checkpointing recomputes blocks in backward, which would draw other dropout masks; lora.dropout is ",
           config.lora.dropout, ": set it to 0, or checkpointing to 0");
    model_->checkpoint_every = config.train.activation_checkpointing;
  }
  std::string lora_line;
  lora_ = attach_lora(*model_, config, /*record_checksum=*/topo.node_rank == 0, &lora_line);
  if (!lora_line.empty() && topo.node == 0 && topo.node_rank == 0) std::printf("%s\n", lora_line.c_str());
}

std::vector<int64_t> LmTaskBase::blocks_of(const std::vector<torch::Tensor>& params) const {
  return model::blocks_of(model_->decoder_blocks(), params);
}

bool LmTaskBase::write_hf_output(const std::string& weights, const std::string& out_dir) const {
  if (lora_.enabled()) {
    write_peft_output(weights, out_dir);
    return true;
  }
  if (!model::is_hf_model_dir(init_)) return false;
  family::write_hf_output(weights, out_dir);
  return true;
}

nlohmann::json LmTaskBase::validate(int64_t batch) {
  nlohmann::json record = nlohmann::json::object();
  if (has_val_data()) record["val_loss"] = val_loss(batch);
  if (val_task_) {
    dist::PrecisionGuard precision(device(), precision_);
    record["val_acc"] = eval::in_eval_mode({model_.get()}, [&] {
                          return val_task_->score(eval::model_log_probs(*model_), device());
                        }).headline();
  }
  return record;
}

LmTask::LmTask(const train::Config& config, const dist::Topology& topo, uint64_t init_seed)
    : LmTaskBase(config, topo, init_seed),
      tokens_(data::split_paths(config.data.train), config.model.vocab_size, config.data.format),
      sampler_(data::node_token_range(tokens_.size(), topo.nodes, topo.node, config.dist.data_split), seq_len_ + 1,
               static_cast<uint64_t>(config.train.seed), topo.node) {
  if (!config.data.val.empty()) {
    val_ = std::make_unique<data::TokenShards>(data::split_paths(config.data.val), config.model.vocab_size, config.data.format);
  }
}

void LmTask::begin_step(int64_t step, int64_t node_batch) { starts_ = sampler_.batch_starts(step, node_batch); }

torch::Tensor LmTask::loss(int64_t first, int64_t count) {
  stage(first, count);
  return staged_loss();
}

void LmTask::stage(int64_t first, int64_t count) {
  const bool pin = device().is_cuda();
  torch::Tensor window = torch::empty({count, seq_len_ + 1}, torch::TensorOptions(torch::kLong).pinned_memory(pin));  // (B, T + 1)
  for (int64_t i = 0; i < count; ++i)
    tokens_.copy(starts_[static_cast<size_t>(first + i)], seq_len_ + 1, window[i].data_ptr<int64_t>());
  window = dist::to_device(window, device());
  // Into the same tensor every time (a replayed step reads it there); the previous micro-batch's
  // kernels, queued before on the same stream, have read it by then.
  if (!window_.defined() || !window_.sizes().equals(window.sizes())) window_ = torch::empty_like(window);
  window_.copy_(window);
}

torch::Tensor LmTask::staged_loss() {
  return model_->loss(window_.narrow(1, 0, seq_len_), window_.narrow(1, 1, seq_len_));  // inputs, targets: (B, T)
}

double LmTask::val_loss(int64_t batch) {
  dist::PrecisionGuard precision(device(), precision_);
  return eval::evaluate_lm(*model_, *val_, seq_len_, batch, eval_batches_ * batch).loss;
}

}  // namespace lofi::family
