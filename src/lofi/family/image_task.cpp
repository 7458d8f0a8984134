#include "lofi/family/image_task.h"


#include <cstdio>

#include "lofi/data/image_sampler.h"
#include "lofi/data/mixup.h"
#include "lofi/data/sampler.h"
#include "lofi/dist/device.h"
#include "lofi/error.h"
#include "lofi/family/built_in_pieces.h"
#include "lofi/eval/classification.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/lora.h"
#include "lofi/model/vit_checkpoint.h"
#include "lofi/seed.h"

namespace lofi::family {

model::VitConfig vit_config(const train::ModelConfig& config, int64_t num_classes) {
  model::VitConfig c = model::vit_config_preset(config.preset);
  if (config.image_size > 0) c.image_size = config.image_size;
  c.num_classes = num_classes;
  c.drop_path_rate = config.drop_path;
  c.proj_drop_rate = c.attn_drop_rate = config.dropout;
  return c;
}

model::Vit make_vit(const train::ModelConfig& config, int64_t num_classes, uint64_t seed, std::vector<std::string>* notices,
                    bool* head_reinitialised, model::DeferredWeights* deferred) {
  // A LoRA adapter: its base, then the adapter (and its saved modules, the head) attached.
  if (!config.init.empty() && io::is_lora_adapter(config.init)) {
    if (deferred) fail("internal: a LoRA adapter's base is not built in pieces");
    const io::LoraAdapter adapter = io::read_lora_adapter(config.init);
    train::ModelConfig base = config;
    base.init = adapter_base(adapter);
    model::Vit vit = make_vit(base, num_classes, seed, notices, head_reinitialised);
    attach_adapter(*vit, adapter, config.dtype);
    return vit;
  }
  torch::manual_seed(seed);
  // Built in pieces, the draws are kept whatever model.init holds: a new head drawn after the
  // checkpoint's load must get what an ordinary build gives it.
  std::optional<model::MetaParameters> meta;
  if (deferred) meta.emplace(/*keep_draws=*/true);
  model::Vit vit(vit_config(config, num_classes), deferred);
  if (head_reinitialised) *head_reinitialised = false;
  if (!config.init.empty()) {
    auto file = std::make_shared<const io::SafetensorsFile>(config.init);
    std::vector<std::string> adapted = model::load_vit_checkpoint(vit, *file, head_reinitialised, deferred);
    if (notices) *notices = adapted;
    if (deferred) deferred->keep(std::move(file));
  }
  return vit;
}

data::AugmentConfig augment_config(const train::Config& config, int64_t image_size) {
  const train::ImagesConfig& im = config.images;
  data::AugmentConfig a;
  a.image_size = image_size;
  a.scale_min = im.scale_min;
  a.hflip = im.hflip;
  a.color_jitter = im.color_jitter;
  a.mixup_alpha = im.mixup;
  a.cutmix_alpha = im.cutmix;
  a.mix_prob = im.mix_prob;
  a.label_smoothing = im.label_smoothing;
  a.crop_pct = im.crop_pct;
  a.interpolation = im.interpolation;
  data::validate(a);
  return a;
}

namespace {

// Class names travel with the weights so that evaluation maps test folders onto them by name.
std::vector<std::string> classes_or_count(const train::ModelConfig& config, const data::ImageFolder& folder) {
  if (config.num_classes > 0 && config.num_classes != static_cast<int64_t>(folder.classes().size()))
    fail("config: model.num_classes = ", config.num_classes, " but ", folder.root(), " has ", folder.classes().size(),
         " classes");
  // A classifier learns to tell classes apart: one class trains to a loss of 0 and learns
  // nothing, and a class without images is a label it never sees (torchvision's ImageFolder
  // refuses it too).
  if (folder.classes().size() < 2)
    fail("data.train = ", folder.root(), ": one class directory (", folder.classes().front(),
         "); a classifier needs two or more (root/CLASS/IMAGE)");
  std::vector<int64_t> images(folder.classes().size(), 0);
  for (const auto& s : folder.samples()) ++images[static_cast<size_t>(s.label)];
  for (size_t c = 0; c < images.size(); ++c)
    if (images[c] == 0)
      fail("data.train = ", folder.root(), ": class directory \"", folder.classes()[c], "\" holds no .jpg, .jpeg or .png ",
           "image; add images or remove it");
  return folder.classes();
}

data::LoaderConfig loader_config(const train::ImagesConfig& images) {
  data::LoaderConfig lc;
  lc.threads = images.loader_threads;
  lc.prefetch = images.prefetch;
  lc.on_bad_image = images.on_bad_image;
  return lc;
}

}  // namespace

ImageTask::ImageTask(const train::Config& config, const dist::Topology& topo, uint64_t init_seed)
    : config_(config), topo_(topo), train_(config.data.train) {
  const auto classes = classes_or_count(config.model, train_);
  // data.val serves the periodic evaluation (train.eval_every) and a lo-fi job's averaging check.
  if (config.train.eval_every > 0 && config.data.val.empty()) fail("config: train.eval_every > 0 needs data.val");
  if (!config.data.val.empty()) {
    val_ = std::make_unique<data::ImageFolder>(config.data.val, classes);
  }
  std::vector<std::string> notices;
  deferred_ = weights_built_in_pieces(config, topo);
  model_ = make_vit(config.model, static_cast<int64_t>(classes.size()), init_seed, &notices, &head_is_new_, deferred_.get());
  std::string lora_line;
  lora_ = attach_lora(*model_, config, /*record_checksum=*/topo.node_rank == 0, &lora_line);
  if (!lora_line.empty()) notices.push_back(lora_line);
  if (topo.node_rank == 0 && topo.node == 0)
    for (const auto& n : notices) std::printf("%s\n", n.c_str());
  augment_ = augment_config(config, model_->config.image_size);
  const int64_t node_batch = config.train.batch_size / topo.nodes, rank_batch = node_batch / topo.node_size;
  rank_first_ = topo.node_rank * rank_batch;
}

// This worker's images of each step: its slice of the node batch, which the image sampler draws
// from a per-node shuffled order (or the node's shard with dist.data_split = "shard").
void ImageTask::start_loader(int64_t first_step, int64_t node_batch) {
  data::ImageSampler sampler(train_.size(), node_batch, static_cast<uint64_t>(config_.train.seed), topo_.node,
                             topo_.nodes, config_.dist.data_split);
  const int64_t first = rank_first_, count = node_batch / topo_.node_size;
  auto indices = [sampler, first, count](int64_t step) {
    std::vector<int64_t> node_batch_indices = sampler(step);
    return std::vector<int64_t>(node_batch_indices.begin() + first, node_batch_indices.begin() + first + count);
  };
  data::LoaderConfig lc = loader_config(config_.images);
  lc.train = true;
  lc.seed = seed::augmentation(static_cast<uint64_t>(config_.train.seed), topo_.node, topo_.node_rank);
  loader_ = std::make_unique<data::ImageLoader>(train_.samples(), augment_, lc, indices, first_step,
                                                config_.train.steps - first_step);
  loader_step_ = first_step;
}

void ImageTask::begin_step(int64_t step, int64_t node_batch) {
  if (!loader_ || step != loader_step_) start_loader(step, node_batch);
  std::optional<data::ImageBatch> batch = loader_->next();
  if (!batch) fail("image loader ran out of batches at step ", step);
  ++loader_step_;
  // (The loader has already warned about any unreadable image it substituted.)
  // One mixing draw per worker batch (timm's batch mode), from (seed, node, rank, step).
  auto gen = at::make_generator<at::CPUGeneratorImpl>(
      seed::mixup(static_cast<uint64_t>(config_.train.seed), topo_.node, topo_.node_rank, step));
  data::MixedBatch mixed = data::mix_batch(batch->images, batch->labels, model_->config.num_classes, augment_, gen);
  images_ = dist::to_device(mixed.images, device());
  targets_ = dist::to_device(mixed.targets, device());
}

int64_t ImageTask::offset_of(int64_t first, int64_t count) const {
  const int64_t offset = first - rank_first_;
  if (offset < 0 || offset + count > images_.size(0))
    fail("image task: micro-batch [", first, ", ", first + count, ") is not this worker's");
  return offset;
}

void ImageTask::stage(int64_t first, int64_t count) {
  const int64_t offset = offset_of(first, count);
  const torch::Tensor images = images_.narrow(0, offset, count), targets = targets_.narrow(0, offset, count);
  if (!staged_images_.defined() || !staged_images_.sizes().equals(images.sizes())) {
    staged_images_ = torch::empty_like(images, torch::MemoryFormat::Contiguous);
    staged_targets_ = torch::empty_like(targets, torch::MemoryFormat::Contiguous);
  }
  staged_images_.copy_(images);
  staged_targets_.copy_(targets);
}

torch::Tensor ImageTask::staged_loss() {
  return data::soft_target_cross_entropy(model_->forward(staged_images_), staged_targets_);  // logits: (B, classes)
}

torch::Tensor ImageTask::loss(int64_t first, int64_t count) {
  const int64_t offset = offset_of(first, count);
  torch::Tensor logits = model_->forward(images_.narrow(0, offset, count));  // (B, classes)
  return data::soft_target_cross_entropy(logits, targets_.narrow(0, offset, count));
}

nlohmann::json ImageTask::validate(int64_t batch) {
  // eval_batches x BATCH images, an even share of every class (as `lofi eval --max-images`).
  const int64_t count = config_.train.eval_batches * batch;
  const std::vector<int64_t> subset = count < val_->size() ? data::balanced_subset(*val_, count) : std::vector<int64_t>{};
  auto loader = data::make_eval_loader(*val_, augment_, loader_config(config_.images), batch, subset);
  eval::ClassificationMeter meter;
  torch::NoGradGuard no_grad;
  dist::PrecisionGuard precision(device(), config_.train.precision);  // as the training forward runs (bf16 weights need it)
  const bool was_training = model_->is_training();
  model_->eval();
  while (auto b = loader->next()) meter.add(model_->forward(dist::to_device(b->images, device())), b->labels);
  model_->train(was_training);
  const eval::ClassificationScore s = meter.score();
  // Every image unreadable: a score of nothing is no score (its loss would read as a perfect 0).
  if (s.count == 0)
    fail("data.val ", config_.data.val, ": no image of it could be read (see the warnings above), so nothing was scored; ",
         "fix or replace the images, or leave data.val out");
  return {{"val_loss", s.loss}, {"val_top1", s.top1}, {"val_top5", s.top5}};
}

std::string ImageTask::probe_head(int64_t steps, double lr, int64_t batch) {
  if (config_.model.init.empty())
    fail("config: train.head_init = \"lp\" needs pretrained features; model.init is empty, so the whole model is "
         "random. Set model.init, or use train.head_init = \"random\"");
  if (!head_is_new_)
    fail("config: train.head_init = \"lp\" probes a new head, but ", config_.model.init, " has a head for these ",
         model_->config.num_classes, " classes and it was loaded. Use train.head_init = \"random\" (keeps it)");
  // The same images in the same order on every node (node 0 of 1's stream), evaluation transforms:
  // every node leaves with the same head, so the nodes still start from one point.
  data::ImageSampler sampler(train_.size(), batch, static_cast<uint64_t>(config_.train.seed), 0, 1, "shuffle");
  data::LoaderConfig lc = loader_config(config_.images);
  lc.train = false;
  data::ImageLoader loader(train_.samples(), augment_, lc, [sampler](int64_t step) { return sampler(step); }, 0, steps);
  std::vector<torch::Tensor> head;
  std::vector<bool> trained;  // restored after the probe: a LoRA run's base stays frozen
  for (auto& p : model_->parameters()) trained.push_back(p.requires_grad());
  for (auto& p : model_->named_parameters()) {
    const bool is_head = p.key().rfind("head.", 0) == 0 || p.key().rfind("head_dist.", 0) == 0;
    p.value().set_requires_grad(is_head);
    if (is_head) head.push_back(p.value());
  }
  torch::optim::AdamW probe(head, torch::optim::AdamWOptions(lr).weight_decay(0.0));
  const bool was_training = model_->is_training();
  model_->eval();  // frozen features: no dropout or drop-path in the backbone
  // Forward passes of at most a training micro-batch, so the probe fits wherever training does;
  // gradients of the mean loss accumulate over them.
  const int64_t micro = std::max<int64_t>(1, batch / std::max<int64_t>(1, config_.train.grad_accum * topo_.nodes * topo_.node_size));
  double first = 0, last = 0;
  for (int64_t s = 0; s < steps; ++s) {
    std::optional<data::ImageBatch> b = loader.next();
    if (!b) fail("linear probe: the image loader ran out of batches at step ", s);
    probe.zero_grad();
    const int64_t n = b->images.size(0);
    double loss_sum = 0;
    for (int64_t at = 0; at < n; at += micro) {
      const int64_t count = std::min(micro, n - at);
      torch::Tensor logits = model_->forward(dist::to_device(b->images.narrow(0, at, count), device()));  // (B, classes)
      torch::Tensor loss = torch::nn::functional::cross_entropy(logits, dist::to_device(b->labels.narrow(0, at, count), device()),
                                                                torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)) /
                           static_cast<double>(n);
      loss.backward();
      loss_sum += loss.item<double>();
    }
    probe.step();
    last = loss_sum;
    if (s == 0) first = last;
  }
  model_->train(was_training);
  size_t k = 0;
  for (auto& p : model_->parameters()) p.set_requires_grad(trained[k++]);
  char line[200];
  std::snprintf(line, sizeof(line), "linear probe (train.head_init = \"lp\"): %lld steps of the new head on frozen "
                "features, the same on every node; loss %.4f -> %.4f", static_cast<long long>(steps), first, last);
  return line;
}

bool ImageTask::write_hf_output(const std::string& weights, const std::string& out_dir) const {
  if (!lora_.enabled()) return false;
  write_peft_output(weights, out_dir);
  return true;
}

io::Metadata ImageTask::metadata() const {
  io::Metadata meta = lora_.metadata();
  meta["lofi.classes"] = nlohmann::json(train_.classes()).dump();
  return meta;
}

}  // namespace lofi::family
