// A fully sharded start (dist.shard = "full") that never holds the whole model, on the host or the
// device: the layers lofi defines make their parameters on the meta device (shapes, no memory),
// and each such parameter keeps where its start value comes from (the seeded random init's draws,
// or a tensor of a weights file kept mapped). The trainer fills the decoder blocks' one block at a
// time as it shards them (train/trainer.cpp), the way FSDP2 users build on the meta device and then
// load each rank's pieces.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lofi::model {

// While one lives (on this thread), the layers lofi defines (Linear, Conv1D, RmsNorm) make their
// parameters on the meta device; torch's own modules (embeddings, LayerNorm, an untied LM head) are
// made as usual. KEEP_DRAWS: a Linear still draws its Kaiming init, into a scratch tensor it drops,
// so the random stream after it is the one an ordinary build leaves (a random init that follows
// then draws what it would have).
class MetaParameters {
 public:
  explicit MetaParameters(bool keep_draws);
  ~MetaParameters();
  MetaParameters(const MetaParameters&) = delete;
  MetaParameters& operator=(const MetaParameters&) = delete;

  static bool active();
  static bool keeps_draws();
  // Host memory of SIZES and DTYPE for draws that only move the random stream on: one buffer per
  // scope, reused, so a model's worth of such draws neither costs a model's memory nor leaves the
  // allocator holding freed blocks (glibc's heap keeps them resident once its mmap threshold rose).
  static torch::Tensor scratch(at::IntArrayRef sizes, torch::Dtype dtype);

 private:
  bool was_active_, kept_draws_;
};

// While one lives (on this thread), the layers lofi defines (Linear, lm_embedding, OutputHead) make
// their parameters without drawing start values of their own: for a model whose every parameter is
// set next, by its seeded init or a checkpoint's load. Draws that are only overwritten cost minutes
// at 8B (PyTorch's CPU samplers run on one core).
class NoInitDraws {
 public:
  NoInitDraws();
  ~NoInitDraws();
  NoInitDraws(const NoInitDraws&) = delete;
  NoInitDraws& operator=(const NoInitDraws&) = delete;

 private:
  bool was_active_;
};

// Whether a layer made now skips its own init draws: inside NoInitDraws, or inside MetaParameters
// without keep_draws.
bool init_draws_skipped();

// The options a layer makes a parameter with: the meta device inside a MetaParameters scope, else
// the defaults (the host, torch's default dtype).
torch::TensorOptions parameter_options();

// Parameters without memory yet, each with how to make its start value.
class DeferredWeights {
 public:
  using Fill = std::function<void(const torch::Tensor& into)>;  // writes the value into INTO (host, the parameter's dtype)

  // Parameter NAME (PARAM, on the meta device) gets its value from FILL; a later call for the
  // same name replaces the earlier (a resumed run's checkpoint over model.init).
  void defer(const torch::Tensor& param, const std::string& name, Fill fill);
  // Parameter NAME (PARAM, on the meta device) starts as a random draw, DRAW(into, stream): the
  // default CPU stream as it stands is kept for the fill, and the default stream moves on as if
  // PARAM had drawn (DRAW into scratch memory), so every draw after it gets what an ordinary build
  // gives.
  using Draw = std::function<void(const torch::Tensor& into, const at::Generator& stream)>;
  void defer_draw(const torch::Tensor& param, const std::string& name, Draw draw);
  bool deferred(const std::string& name) const { return entries_.count(name) > 0; }
  // Gives PARAM (the module's own parameter NAME, not a detached alias) host memory of its dtype
  // and writes its value; it is deferred no more.
  void fill(const std::string& name, const torch::Tensor& param);
  // What the fills read from (a mapped weights file), kept until done().
  void keep(std::shared_ptr<const void> source);
  // Every parameter filled: lets the sources go. One left unfilled is an internal error naming it.
  void done();
  size_t size() const { return entries_.size(); }

 private:
  std::map<std::string, Fill> entries_;  // by parameter name
  std::vector<std::shared_ptr<const void>> sources_;
};

}  // namespace lofi::model
