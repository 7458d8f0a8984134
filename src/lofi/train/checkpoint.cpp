#include "lofi/train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include <c10/util/accumulate.h>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/lora.h"
#include "lofi/model/weights.h"

namespace lofi::train {

namespace {

// The weights file's record of a sharded optimizer state: how many files (0: one whole file).
constexpr const char* kOptimizerShardsKey = "lofi.optimizer_shards";

// FILE's metadata KEY as an integer; WHAT says what it should be, for the error.
int64_t metadata_integer(const io::SafetensorsFile& file, const std::string& key, const std::string& value, const char* what) {
  try {
    size_t used = 0;
    const int64_t n = std::stoll(value, &used);
    if (used == value.size()) return n;
  } catch (const std::exception&) {
  }
  fail(file.path(), ": metadata ", key, " = \"", value, "\" is not ", what, "; the file is damaged or not lofi's");
}

int64_t optimizer_shards(const io::SafetensorsFile& weights) {
  auto it = weights.metadata().find(kOptimizerShardsKey);
  if (it == weights.metadata().end()) return 0;
  return metadata_integer(weights, kOptimizerShardsKey, it->second, "a count of files");
}

std::vector<std::string> optimizer_files(const run::Checkpoint& paths, const io::SafetensorsFile& weights) {
  const int64_t shards = optimizer_shards(weights);
  if (shards == 0) return {paths.optimizer};
  std::vector<std::string> files;
  for (int64_t r = 0; r < shards; ++r) files.push_back(paths.optimizer_shard(r, shards));
  return files;
}

// Removes the optimizer files of PATHS' step (the one file, and every worker's of any worker
// count) but those in KEEP: a pruned checkpoint's, or those a step saved again no longer uses.
void remove_optimizer_files(const run::NodeDir& node, const run::Checkpoint& paths, const std::vector<std::string>& keep = {}) {
  const std::string prefix = std::filesystem::path(paths.optimizer).stem().string();  // "step-000500.optim"
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(node.checkpoint_dir(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    if (std::none_of(keep.begin(), keep.end(), [&](const std::string& k) { return std::filesystem::path(k).filename() == name; }))
      std::filesystem::remove(entry.path(), ec);
  }
}

}  // namespace

std::vector<std::string> optimizer_files(const run::Checkpoint& paths) {
  return optimizer_files(paths, io::SafetensorsFile(paths.weights));
}

void verify_checkpoint(const run::Checkpoint& paths) {
  // Each file records the step it holds: one copied or restored under another step's name would
  // resume with state of another step, silently.
  auto same_step = [&](const io::SafetensorsFile& file) {
    auto it = file.metadata().find("step");
    if (it != file.metadata().end() && metadata_integer(file, "step", it->second, "a step") != paths.step)
      fail(file.path(), ": holds the state of step ", it->second, " but is named for step ", paths.step,
           " (copied or restored from another checkpoint?)");
  };
  io::SafetensorsFile weights(paths.weights);  // throws on a missing, truncated or malformed file
  weights.verify_data_checksum();
  same_step(weights);
  for (const auto& path : optimizer_files(paths, weights)) {
    io::SafetensorsFile file(path);
    file.verify_data_checksum();
    same_step(file);
  }
}

std::optional<run::Checkpoint> ResumeCandidates::newest(int64_t at_most) {
  std::string damaged;
  bool passed_over = false;
  for (auto it = all_.rbegin(); it != all_.rend(); ++it) {
    if (it->step > at_most) continue;
    if (std::find(verified_.begin(), verified_.end(), it->step) != verified_.end()) return *it;
    try {
      verify_checkpoint(*it);
      verified_.push_back(it->step);
      if (verbose_ && passed_over)
        std::printf("resume: falling back to the newest checkpoint that verifies, step %lld\n", static_cast<long long>(it->step));
      return *it;
    } catch (const Error& e) {
      if (verbose_) std::printf("resume: checkpoint of step %lld is unusable: %s\n", static_cast<long long>(it->step), e.what());
      damaged += std::string(damaged.empty() ? "" : "; ") + e.what();
      passed_over = true;
    }
  }
  // Below a step (the nodes' agreement): none there is no step in common, not a node that cannot resume.
  if (passed_over && at_most == INT64_MAX)
    fail("--resume: no checkpoint in ", node_.checkpoint_dir(), " verifies (", damaged, "); start over with --overwrite");
  return std::nullopt;
}

std::string checkpoint_record(const run::Checkpoint& paths, const std::string& key) {
  io::SafetensorsFile weights(paths.weights);
  auto it = weights.metadata().find(key);
  return it == weights.metadata().end() ? "" : it->second;
}

io::NamedTensors checkpoint_weights(const torch::nn::Module& module) {
  return model::has_frozen_weights(module) ? model::trainable_weights(module) : model::module_weights(module);
}

void load_checkpoint_weights(torch::nn::Module& module, std::shared_ptr<const io::SafetensorsFile> file,
                             model::DeferredWeights* deferred) {
  if (model::has_frozen_weights(module)) model::load_trainable_weights(module, *file);
  else model::load_module_weights(module, std::move(file), {}, deferred);
}

void prune_checkpoints(const run::NodeDir& node, int64_t keep, int64_t met) {
  if (keep <= 0) return;
  auto all = node.checkpoints();
  int64_t common = -1;  // the newest before the last meeting
  for (const auto& c : all)
    if (c.step < met) common = c.step;
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    if (all[i].step == common) continue;
    std::error_code ec;
    std::filesystem::remove(all[i].weights, ec);  // the weights first: what remains is incomplete, never listed
    remove_optimizer_files(node, all[i]);
  }
}

void save_optimizer_shard(const run::NodeDir& node, int64_t step, const Optimizer& optimizer, const OuterOptimizer* outer,
                          dist::Comm& comm) {
  const dist::Topology& topo = comm.topology();
  const std::string path = node.checkpoint(step).optimizer_shard(topo.node_rank, topo.node_size);
  std::string error;
  try {
    io::make_dirs(node.checkpoint_dir());
    io::Metadata metadata{{"step", std::to_string(step)}};
    io::NamedTensors state = optimizer.shard_state(metadata);
    if (outer)
      for (auto& t : outer->state()) state.push_back(std::move(t));
    io::save_safetensors(path, state, metadata, /*checksum=*/true);
  } catch (const std::exception& e) {
    error = e.what();
  }
  torch::Tensor written = torch::full({1}, error.empty() ? 1.0 : 0.0, torch::TensorOptions().device(comm.device()));
  comm.node_mean({written});  // 1 when every worker's file is written
  if (!error.empty()) fail("checkpoint of step ", step, ": worker ", topo.node_rank, " of node ", topo.node, " could not write ", path, ": ", error);
  if (written.item<double>() < 1.0)
    fail("checkpoint of step ", step, ": another worker of node ", topo.node, " could not write its optimizer shard (its error says why); ",
         "the checkpoint is incomplete and is not used");
}

bool gathers_weights(const Optimizer& optimizer, const dist::GradientSync& sync) {
  return optimizer.sharded() && (sync.shards_params() || optimizer.keeps_masters());
}

void NodeWeights::write(const std::string& path, const io::Metadata& metadata, bool checksum) const {
  io::NamedTensors tensors = writes ? checkpoint_weights(module) : io::NamedTensors{};  // a fully sharded block's: shapes alone
  if (!gathers_weights(optimizer, sync)) {
    if (!writes) return;
    std::map<std::string, torch::Tensor> masters;
    if (optimizer.keeps_masters())
      for (auto& [name, master] : optimizer.masters()) masters[name] = master;
    for (auto& [name, tensor] : tensors)
      if (auto it = masters.find(name); it != masters.end()) tensor = it->second;
    io::save_safetensors(path, tensors, metadata, checksum);
    return;
  }
  const auto& params = optimizer.params();
  const std::vector<torch::Tensor> values = optimizer.piece_values();  // the masters, or the fp32 parts
  torch::Dtype dtype = torch::kFloat;
  for (const auto& v : values)
    if (v.defined()) dtype = v.scalar_type();
  const std::vector<size_t> order = sync.packing_order();
  std::unique_ptr<io::SafetensorsWriter> writer;
  std::string error;  // the writer's: it still takes part in the gathers, then says it
  if (writes) {
    try {
      std::set<std::string> gathered;
      for (const auto& p : params) gathered.insert(p.name);
      std::vector<io::TensorEntry> layout;
      io::NamedTensors rest;
      for (auto& [name, tensor] : tensors)
        if (!gathered.count(name)) {
          layout.push_back({name, io::dtype_to_safetensors(tensor.scalar_type()), tensor.sizes().vec(), 0, 0});
          rest.emplace_back(name, tensor);
        }
      for (size_t k : order)
        layout.push_back({params[k].name, io::dtype_to_safetensors(dtype), params[k].param.sizes().vec(), 0, 0});
      writer = std::make_unique<io::SafetensorsWriter>(path, layout, metadata, checksum);
      for (const auto& [name, tensor] : rest) writer->write(tensor);
    } catch (const std::exception& e) {
      error = e.what(), writer.reset();
    }
  }
  size_t next = 0;
  sync.gather(values, [&](size_t k, const torch::Tensor& flat) {
    if (next >= order.size() || order[next++] != k) fail("internal: ", path, ": parameters gathered out of packing order");
    if (!writer) return;
    try {
      writer->write(flat.view(params[k].param.sizes()));
    } catch (const std::exception& e) {
      error = e.what(), writer.reset();
    }
  });
  if (writer) writer->commit();
  if (!error.empty()) fail(error);
}

void save_checkpoint(const run::NodeDir& node, int64_t step, const NodeWeights& weights,
                     OptimizerState optimizer, const io::Metadata& records, const OuterOptimizer* outer,
                     int64_t optimizer_shards) {
  const run::Checkpoint paths = node.checkpoint(step);
  io::Metadata metadata;
  std::string error;  // the writer's: it still takes part in the node's gathers, then says it
  if (weights.writes) {
    try {
      io::make_dirs(node.checkpoint_dir());
      metadata = records;
      metadata["step"] = std::to_string(step);
      if (optimizer_shards > 0) {
        metadata[kOptimizerShardsKey] = std::to_string(optimizer_shards);
      } else {
        io::Metadata optim_meta = std::move(optimizer.metadata);
        optim_meta["step"] = std::to_string(step);
        io::NamedTensors state = std::move(optimizer.tensors);
        if (outer)
          for (auto& t : outer->state()) state.push_back(std::move(t));
        io::save_safetensors(paths.optimizer, state, optim_meta, /*checksum=*/true);
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  NodeWeights w = weights;
  w.writes = weights.writes && error.empty();
  w.write(paths.weights, metadata, /*checksum=*/true);
  if (!error.empty()) fail("checkpoint of step ", step, ": ", error);
  if (!weights.writes) return;
  // The step saved before under another sharding or worker count (a resumed run) leaves files the
  // weights file no longer names.
  remove_optimizer_files(node, paths, optimizer_files(paths));
}

namespace {

// The optimizer state of a checkpoint whose node sharded it: each worker's file holds its pieces
// ("NAME.range" in its metadata), and a piece of another layout is read from the files whose
// pieces overlap it, so a run resumes under any worker count and dist.shard.
class ShardedState {
 public:
  explicit ShardedState(const std::vector<std::string>& paths) {
    for (const auto& path : paths) files_.push_back(std::make_unique<io::SafetensorsFile>(path));
    for (size_t f = 0; f < files_.size(); ++f)
      for (const auto& [key, value] : files_[f]->metadata()) {
        const std::string suffix = ".range";
        if (key.size() <= suffix.size() || key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
        const size_t comma = value.find(',');
        const char* what = "\"begin,end\" (two element counts)";
        if (comma == std::string::npos) fail(files_[f]->path(), ": metadata ", key, " = \"", value, "\" is not ", what);
        ranges_[key.substr(0, key.size() - suffix.size())].push_back(
            {metadata_integer(*files_[f], key, value.substr(0, comma), what), metadata_integer(*files_[f], key, value.substr(comma + 1), what), f});
      }
    for (const auto& file : files_) source_ += (source_.empty() ? "" : ", ") + file->path();
  }
  const io::SafetensorsFile& first() const { return *files_.front(); }

  StateReader reader() const {
    StateReader r;
    r.source = source_;
    r.step = [this](const std::string& param) {
      for (const auto& file : files_)
        if (auto it = file->metadata().find(param + ".step"); it != file->metadata().end())
          return metadata_integer(*file, it->first, it->second, "a step count");
      fail(source_, ": no optimizer state for parameter '", param, "'");
    };
    r.read = [this](const std::string& name, int64_t begin, int64_t end, at::IntArrayRef shape) { return read(name, begin, end, shape); };
    return r;
  }

 private:
  struct Range {
    int64_t begin, end;
    size_t file;
  };
  // Elements [BEGIN, END) of the flat NAME ("w.exp_avg"), from every file's piece of them.
  torch::Tensor read(const std::string& name, int64_t begin, int64_t end, at::IntArrayRef shape) const {
    const std::string param = name.substr(0, name.rfind('.'));
    const int64_t numel = c10::multiply_integers(shape);
    torch::Tensor out;
    int64_t covered = 0;
    auto it = ranges_.find(param);
    for (const Range& piece : it == ranges_.end() ? std::vector<Range>{} : it->second) {
      if (piece.end > numel)
        fail(files_[piece.file]->path(), ": optimizer state of '", param, "' reaches element ", piece.end, "; the parameter has ",
             numel, " (shape ", shape, "): a checkpoint of another model");
      const int64_t lo = std::max(begin, piece.begin), hi = std::min(end, piece.end);
      if (lo >= hi) continue;
      const torch::Tensor t = files_[piece.file]->load(name);  // (piece.end - piece.begin,)
      if (t.dim() != 1 || t.size(0) != piece.end - piece.begin)
        fail(files_[piece.file]->path(), ": optimizer tensor '", name, "' has shape ", t.sizes(), ", expected [", piece.end - piece.begin, "]");
      if (!out.defined()) out = torch::empty({end - begin}, t.options());
      out.narrow(0, lo - begin, hi - lo).copy_(t.narrow(0, lo - piece.begin, hi - lo));
      covered += hi - lo;  // the workers' pieces never overlap
    }
    if (covered != end - begin)
      fail(source_, ": the optimizer shards hold ", covered, " of elements [", begin, ", ", end, ") of '", name,
           "'; a shard is missing or belongs to another checkpoint");
    return out;
  }

  std::vector<std::unique_ptr<io::SafetensorsFile>> files_;
  std::map<std::string, std::vector<Range>> ranges_;  // parameter -> the pieces the files hold
  std::string source_;
};

}  // namespace

int64_t load_checkpoint(const run::Checkpoint& paths, torch::nn::Module& module, Optimizer& optimizer,
                        OuterOptimizer* outer, model::DeferredWeights* deferred) {
  auto file = std::make_shared<const io::SafetensorsFile>(paths.weights);
  const io::SafetensorsFile& weights = *file;
  load_checkpoint_weights(module, file, deferred);
  if (optimizer_shards(weights) > 0) {
    const ShardedState state(optimizer_files(paths, weights));
    optimizer.load_state(state.reader());
    if (outer) outer->load_state(state.first());  // the node leader's file holds it
    return paths.step;
  }
  io::SafetensorsFile optim(paths.optimizer);
  optimizer.load_state(optim);
  if (outer) outer->load_state(optim);
  return paths.step;
}

}  // namespace lofi::train
