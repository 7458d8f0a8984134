// ImageLoader: decodes and augments the next `prefetch` batches on worker threads while the
// trainer computes, and hands them out in step order. A batch depends only on (seed, step) and
// the caller's step -> indices function, never on the thread count or scheduling. Unreadable
// images are skipped (with a warning and a deterministic substitute) or fatal, by setting.
#pragma once
#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lofi/data/augment.h"
#include "lofi/data/image_folder.h"

namespace lofi::data {

struct LoaderConfig {
  int64_t threads = 2;                 // decoding threads, e.g. 2; each runs torch ops single-threaded
  int64_t prefetch = 4;                // batches decoded ahead of the trainer, e.g. 4 (>= 1); bounds memory
  std::string on_bad_image = "skip";   // "skip": warn, count, substitute (train) or drop (eval); "fail": throw
  bool train = true;                   // true: train_transform (random); false: eval_transform
  uint64_t seed = 0;                   // augmentation stream, e.g. mix_seed(run seed, node id)
};

struct ImageBatch {
  int64_t step = 0;
  torch::Tensor images;                // (B, 3, S, S) float, normalised
  torch::Tensor labels;                // (B) int64
  std::vector<std::string> bad_paths;  // images of this batch that could not be read (skip mode)
};

// Sample indices (into the loader's samples) of a step's batch. Must be a pure function of the
// step: it is called from the caller's thread, ahead of time.
using BatchIndices = std::function<std::vector<int64_t>(int64_t step)>;

class ImageLoader {
 public:
  // Batches for steps first_step, first_step + 1, ...; num_steps < 0: without end.
  ImageLoader(std::vector<ImageSample> samples, AugmentConfig augment, LoaderConfig config, BatchIndices indices,
              int64_t first_step = 0, int64_t num_steps = -1);
  ~ImageLoader();  // stops the workers (each finishes at most one image) and joins them
  ImageLoader(const ImageLoader&) = delete;
  ImageLoader& operator=(const ImageLoader&) = delete;

  // The next step's batch, waiting for it if needed; nullopt after num_steps batches. Rethrows
  // the first error of that batch (a lofi::Error naming the image in "fail" mode).
  std::optional<ImageBatch> next();

  int64_t skipped() const { return skipped_; }  // unreadable images met in returned batches
  int64_t size() const { return static_cast<int64_t>(samples_.size()); }

 private:
  struct Pending;  // a batch being decoded
  void schedule_locked();
  void worker_loop();
  void load_slot(Pending& batch, int64_t slot);

  std::vector<ImageSample> samples_;
  AugmentConfig augment_;
  LoaderConfig config_;
  BatchIndices indices_;
  int64_t next_step_, end_step_;    // next batch to hand out; one past the last (-1: none)
  int64_t scheduled_step_;          // next batch to schedule
  int64_t skipped_ = 0;

  std::mutex mutex_;
  std::condition_variable work_ready_, batch_done_;
  std::deque<std::shared_ptr<Pending>> batches_;                   // scheduled, in step order
  std::deque<std::pair<std::shared_ptr<Pending>, int64_t>> tasks_;  // (batch, slot) not yet started
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// Makes LibTorch run single-threaded in the calling thread only (each loader worker calls it);
// the process-wide setting, and so the trainer's and autograd's threads, stay as they are.
void use_one_torch_thread();

// Evaluation: every sample of FOLDER once, in order (or the samples SUBSET indexes, in its order),
// in batches of BATCH_SIZE (the last may be smaller), with config.train forced to false.
std::unique_ptr<ImageLoader> make_eval_loader(const ImageFolder& folder, AugmentConfig augment, LoaderConfig config,
                                              int64_t batch_size, const std::vector<int64_t>& subset = {});

}  // namespace lofi::data
