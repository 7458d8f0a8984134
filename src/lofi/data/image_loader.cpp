// The loader's threads and bookkeeping. Work is one (batch, slot) task per image, taken in step
// order, so N threads fill the front batch together. Each slot writes its own rows of a batch
// tensor allocated at scheduling; a batch's randomness is a generator seeded from
// (seed, step, slot), so which thread ran a slot never matters.
#include "lofi/data/image_loader.h"

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>

#include "lofi/data/image_decode.h"
#include "lofi/data/sampler.h"
#include "lofi/error.h"

namespace lofi::data {

struct ImageLoader::Pending {
  int64_t step = 0;
  std::vector<int64_t> indices;      // sample per slot
  torch::Tensor images;              // (B, 3, S, S)
  torch::Tensor labels;              // (B)
  std::vector<char> ok;              // slot holds an image (false: unreadable, eval skip)
  std::vector<std::string> bad;      // per slot: the unreadable path, if any
  std::vector<std::exception_ptr> errors;  // per slot; the first in slot order is rethrown
  int64_t remaining = 0;             // slots not yet finished
};

namespace {

// How many other samples a "skip" tries in place of an unreadable one before giving up.
constexpr int kSubstituteAttempts = 16;

// One write per line, so that warnings from several workers do not interleave.
void warn(const std::string& line) { std::fputs(line.c_str(), stderr); }

}  // namespace

// Called at the start of each worker. LibTorch's OpenMP backend sizes a parallel region from
// the calling thread's own OpenMP setting, so without this every worker would fork a team of
// all cores inside each resize and fight the trainer for them. at::set_num_threads(1) is not the
// answer: it also rewrites the process-wide count that new threads (autograd's among them)
// initialise from. So: let LibTorch initialise this thread first (it would otherwise overwrite
// our setting lazily), then limit this thread alone.
void use_one_torch_thread() {
  at::internal::lazy_init_num_threads();  // the header's copy of the once-per-thread flag
  (void)at::get_num_threads();            // and LibTorch's own, should the two not be shared
  omp_set_num_threads(1);
}

ImageLoader::ImageLoader(std::vector<ImageSample> samples, AugmentConfig augment, LoaderConfig config,
                         BatchIndices indices, int64_t first_step, int64_t num_steps)
    : samples_(std::move(samples)),
      augment_(std::move(augment)),
      config_(std::move(config)),
      indices_(std::move(indices)),
      next_step_(first_step),
      end_step_(num_steps < 0 ? -1 : first_step + num_steps),
      scheduled_step_(first_step) {
  validate(augment_);
  if (samples_.empty()) fail("image loader: expected at least one sample, found none");
  if (config_.threads < 1) fail("loader.threads: expected >= 1, found ", config_.threads);
  if (config_.prefetch < 1) fail("loader.prefetch: expected >= 1, found ", config_.prefetch);
  if (config_.on_bad_image != "skip" && config_.on_bad_image != "fail")
    fail("loader.on_bad_image: expected \"skip\" or \"fail\", found \"", config_.on_bad_image, "\"");
  if (!indices_) fail("image loader: expected a step -> indices function, found none");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    schedule_locked();
  }
  for (int64_t t = 0; t < config_.threads; ++t) workers_.emplace_back([this] { worker_loop(); });
}

ImageLoader::~ImageLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    tasks_.clear();
  }
  work_ready_.notify_all();
  for (auto& w : workers_) w.join();
}

// Keeps batches [next_step_, next_step_ + prefetch) scheduled. Called with mutex_ held.
void ImageLoader::schedule_locked() {
  int64_t s = augment_.image_size;
  while (scheduled_step_ < next_step_ + config_.prefetch && (end_step_ < 0 || scheduled_step_ < end_step_)) {
    auto batch = std::make_shared<Pending>();
    batch->step = scheduled_step_;
    batch->indices = indices_(scheduled_step_);
    auto n = static_cast<int64_t>(batch->indices.size());
    if (n == 0) fail("image loader: expected sample indices for step ", scheduled_step_, ", found none");
    for (int64_t i : batch->indices)
      if (i < 0 || i >= size())
        fail("image loader: step ", scheduled_step_, " asks for sample ", i, ", expected 0 to ", size() - 1);
    batch->images = torch::empty({n, 3, s, s}, torch::kFloat);  // (B, 3, S, S)
    batch->labels = torch::empty({n}, torch::kLong);             // (B)
    batch->ok.assign(static_cast<size_t>(n), 1);
    batch->bad.resize(static_cast<size_t>(n));
    batch->errors.resize(static_cast<size_t>(n));
    batch->remaining = n;
    for (int64_t slot = 0; slot < n; ++slot) tasks_.emplace_back(batch, slot);
    batches_.push_back(std::move(batch));
    ++scheduled_step_;
  }
  work_ready_.notify_all();
}

void ImageLoader::worker_loop() {
  use_one_torch_thread();
  torch::NoGradGuard no_grad;
  for (;;) {
    std::shared_ptr<Pending> batch;
    int64_t slot = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (stopping_) return;
      std::tie(batch, slot) = std::move(tasks_.front());
      tasks_.pop_front();
    }
    try {
      load_slot(*batch, slot);
    } catch (...) {
      // Anything unexpected (a LibTorch error, out of memory) reaches the caller, never terminate().
      batch->errors[static_cast<size_t>(slot)] = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (--batch->remaining == 0) batch_done_.notify_all();
  }
}

void ImageLoader::load_slot(Pending& batch, int64_t slot) {
  auto u = static_cast<uint64_t>(slot);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(config_.seed, static_cast<uint64_t>(batch.step), u));
  int64_t index = batch.indices[u];
  for (int attempt = 0;; ++attempt) {
    const ImageSample& sample = samples_[static_cast<size_t>(index)];
    try {
      auto image = decode_image(sample.path);  // (H, W, 3) uint8
      batch.images[slot].copy_(config_.train ? train_transform(image, augment_, gen) : eval_transform(image, augment_));
      batch.labels[slot] = sample.label;
      return;
    } catch (const Error& e) {
      if (config_.on_bad_image == "fail") throw;
      if (attempt == 0) batch.bad[u] = sample.path;
      if (!config_.train) {  // evaluation drops the image: a substitute would count twice
        batch.ok[u] = 0;
        warn(cat("lofi: warning: skipping unreadable image (", e.what(), ")\n"));
        return;
      }
      if (attempt + 1 >= kSubstituteAttempts)
        fail(batch.bad[u], ": unreadable, and so were ", kSubstituteAttempts - 1, " substitutes; last: ", e.what());
      // A substitute drawn from (seed, step, slot, attempt): the same on every run and thread count.
      index = static_cast<int64_t>(mix_seed(config_.seed, static_cast<uint64_t>(batch.step), u,
                                            static_cast<uint64_t>(attempt) + 1) %
                                   static_cast<uint64_t>(size()));
      warn(cat("lofi: warning: skipping unreadable image (", e.what(), "); using ",
               samples_[static_cast<size_t>(index)].path, " in its place\n"));
    }
  }
}

std::optional<ImageBatch> ImageLoader::next() {
  std::shared_ptr<Pending> batch;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (end_step_ >= 0 && next_step_ >= end_step_) return std::nullopt;
    batch = batches_.front();
    batch_done_.wait(lock, [&] { return batch->remaining == 0; });
    batches_.pop_front();
    ++next_step_;
    schedule_locked();
  }
  for (auto& error : batch->errors)
    if (error) std::rethrow_exception(error);
  ImageBatch out;
  out.step = batch->step;
  out.images = batch->images;
  out.labels = batch->labels;
  for (auto& path : batch->bad)
    if (!path.empty()) out.bad_paths.push_back(path);
  skipped_ += static_cast<int64_t>(out.bad_paths.size());
  if (std::find(batch->ok.begin(), batch->ok.end(), 0) != batch->ok.end()) {
    std::vector<int64_t> keep;
    for (size_t i = 0; i < batch->ok.size(); ++i)
      if (batch->ok[i]) keep.push_back(static_cast<int64_t>(i));
    auto rows = torch::tensor(keep, torch::kLong);
    out.images = out.images.index_select(0, rows);
    out.labels = out.labels.index_select(0, rows);
  }
  return out;
}

std::unique_ptr<ImageLoader> make_eval_loader(const ImageFolder& folder, AugmentConfig augment, LoaderConfig config,
                                              int64_t batch_size, const std::vector<int64_t>& subset) {
  if (batch_size < 1) fail("eval batch size: expected >= 1, found ", batch_size);
  const int64_t n = subset.empty() ? folder.size() : static_cast<int64_t>(subset.size());
  config.train = false;
  auto indices = [n, batch_size, subset](int64_t step) {
    std::vector<int64_t> out;
    for (int64_t i = step * batch_size; i < std::min(n, (step + 1) * batch_size); ++i)
      out.push_back(subset.empty() ? i : subset[static_cast<size_t>(i)]);
    return out;
  };
  return std::make_unique<ImageLoader>(folder.samples(), std::move(augment), std::move(config), indices, 0,
                                       (n + batch_size - 1) / batch_size);
}

}  // namespace lofi::data
