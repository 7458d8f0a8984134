#include "lofi/merge/engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <thread>
#include <unordered_map>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/io/safetensors_set.h"
#include "lofi/merge/nonfinite.h"
#include "lofi/merge/plan.h"
#include "lofi/text.h"

namespace lofi::merge {
namespace fs = std::filesystem;
namespace {

// Output tensors in layout order, produced by worker threads and consumed in order by the
// writer; at most WINDOW are in flight, which bounds memory.
class OrderedResults {
 public:
  OrderedResults(size_t count, size_t window) : results_(count), window_(window) {}
  // Worker side: the next index to compute, or nullopt when done or stopped.
  std::optional<size_t> claim() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return stopped_ || next_ >= results_.size() || next_ < consumed_ + window_; });
    if (stopped_ || next_ >= results_.size()) return std::nullopt;
    return next_++;
  }
  void put(size_t i, torch::Tensor t) {
    std::lock_guard<std::mutex> lock(mu_);
    results_[i] = std::move(t);
    cv_.notify_all();
  }
  void put_error(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) error_ = e;
    stopped_ = true;
    cv_.notify_all();
  }
  // Writer side: waits for result I (rethrowing a worker's error) and releases it.
  torch::Tensor take(size_t i) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return error_ || results_[i].defined(); });
    if (error_) std::rethrow_exception(error_);
    torch::Tensor t = std::move(results_[i]);
    results_[i] = torch::Tensor();
    consumed_ = i + 1;
    cv_.notify_all();
    return t;
  }
  void stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<torch::Tensor> results_;
  size_t window_, next_ = 0, consumed_ = 0;
  bool stopped_ = false;
  std::exception_ptr error_;
};

// The inputs' XXH3 checksums, on all cores (each is one read of its file).
std::vector<std::string> checksums_of(const std::vector<const io::SafetensorsSet*>& files) {
  std::vector<std::string> checksums(files.size());
  std::vector<std::thread> hashers;
  std::atomic<size_t> next_file{0};
  std::mutex error_mu;
  std::exception_ptr error;
  for (unsigned t = 0; t < std::max(1u, std::thread::hardware_concurrency()); ++t)
    hashers.emplace_back([&] {
      try {
        for (size_t i; (i = next_file++) < files.size();) checksums[i] = files[i]->checksum();
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
      }
    });
  for (auto& h : hashers) h.join();
  if (error) std::rethrow_exception(error);
  return checksums;
}

// The execute step: the plan's tensors cut into work items, merged on worker threads and handed
// to the writer in layout order. Work comes in chunks of at most kChunk elements, so a 400 MB
// embedding is not one unit (unless the method needs whole tensors): workers pread each input's
// chunk into small reused buffers and merge it. Memory stays a few chunks per thread.
class StreamingMerge {
 public:
  StreamingMerge(const MergePlan& plan, const MergeOptions& opt);
  ~StreamingMerge() { stop(); }
  StreamingMerge(const StreamingMerge&) = delete;
  StreamingMerge& operator=(const StreamingMerge&) = delete;

  // Appends the merged chunks of the layout's tensor T to WRITER, waiting for them; tensors are
  // taken in layout order (an empty tensor has no chunks).
  void write_tensor(io::SafetensorsWriter& writer, size_t t);

 private:
  static constexpr int64_t kChunk = 1 << 20;
  struct Item {
    size_t tensor;
    int64_t first, count;  // elements; count -1: a whole integer tensor
  };
  static std::vector<Item> work_items(const MergePlan& plan);
  // ASKED threads (0: one per core), no more than there are ITEMS.
  static int worker_count(int asked, size_t items);
  torch::Tensor compute(const Item& item) const;
  torch::Tensor agreed_integers(const std::vector<const io::SafetensorsSet::Tensor*>& entries) const;
  void stop();

  const MergePlan& plan_;
  const MergeOptions& opt_;
  const std::vector<Item> items_;
  const int threads_;
  const int torch_threads_;  // restored at the end
  OrderedResults results_;
  std::vector<std::thread> pool_;
  size_t next_item_ = 0;  // the writer's
};

StreamingMerge::StreamingMerge(const MergePlan& plan, const MergeOptions& opt)
    : plan_(plan),
      opt_(opt),
      items_(work_items(plan)),
      threads_(worker_count(opt.threads, items_.size())),
      torch_threads_(torch::get_num_threads()),
      // Whole tensors can be large: fewer of them wait for the writer.
      results_(items_.size(), static_cast<size_t>((plan.method->whole_tensors() ? 1 : 4) * threads_)) {
  torch::set_num_threads(1);  // parallel over chunks; torch's own threads would oversubscribe
  try {
    for (int t = 0; t < threads_; ++t)
      pool_.emplace_back([&] {
        try {
          while (auto index = results_.claim()) results_.put(*index, compute(items_[*index]));
        } catch (...) {
          results_.put_error(std::current_exception());
        }
      });
  } catch (...) {
    stop();
    throw;
  }
}

std::vector<StreamingMerge::Item> StreamingMerge::work_items(const MergePlan& plan) {
  const io::SafetensorsSet& first = plan.first();
  std::vector<Item> items;
  for (size_t t = 0; t < plan.layout.size(); ++t) {
    const io::TensorEntry& e = *first.tensors()[t].entry;
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    if (!torch::isFloatingType(io::dtype_from_safetensors(e.dtype, first.source()))) {
      items.push_back({t, 0, -1});
    } else if (plan.method->whole_tensors()) {
      items.push_back({t, 0, numel});
    } else {
      for (int64_t at = 0; at < numel; at += kChunk) items.push_back({t, at, std::min(kChunk, numel - at)});
    }
  }
  return items;
}

int StreamingMerge::worker_count(int asked, size_t items) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, std::min<int>(asked > 0 ? asked : cores, static_cast<int>(items)));
}

// Integer tensors (step counters, ids) are not merged: every input must hold the same.
torch::Tensor StreamingMerge::agreed_integers(const std::vector<const io::SafetensorsSet::Tensor*>& entries) const {
  const io::TensorEntry& entry = *entries[0]->entry;
  torch::Tensor integers = entries[0]->file->load(entry);
  for (size_t i = 1; i < plan_.files.size(); ++i)
    if (!torch::equal(integers, entries[i]->file->load(*entries[i]->entry)))
      fail(plan_.what, ": integer tensor '", entry.name, "' differs between ", plan_.first().source(), " and ",
           plan_.files[i]->source());
  return integers;
}

torch::Tensor StreamingMerge::compute(const Item& item) const {
  const io::SafetensorsSet& first = plan_.first();
  const io::TensorEntry& in_entry = *first.tensors()[item.tensor].entry;
  std::vector<const io::SafetensorsSet::Tensor*> entries;  // this tensor in each input
  for (const auto& f : plan_.files) entries.push_back(f.get() == &first ? &first.tensors()[item.tensor] : f->find(in_entry.name));
  if (item.count < 0) return agreed_integers(entries);
  // Inputs are read with pread into buffers each thread reuses (a chunk, or the largest whole
  // tensor so far): each byte is touched once, where a mapping or a fresh allocation would cost
  // a page fault per 4 KB.
  thread_local std::vector<torch::Tensor> buffers;
  auto read = [&](size_t slot, const io::SafetensorsSet::Tensor& tensor, const std::string& source) {
    const torch::Dtype dtype = io::dtype_from_safetensors(tensor.entry->dtype, source);  // the base's may differ
    torch::Tensor values = reused_buffer(buffers, slot, std::max(kChunk, item.count), dtype).narrow(0, 0, item.count);
    tensor.file->read_range(*tensor.entry, item.first, item.count, values.data_ptr());
    if (!opt_.allow_nonfinite) refuse_nonfinite(values, source, in_entry.name, item.first, "--allow-nonfinite");
    return values;
  };
  Piece piece;
  piece.name = in_entry.name;
  piece.offset = item.first;
  piece.weights = plan_.weights;
  for (size_t i = 0; i < plan_.files.size(); ++i) piece.inputs.push_back(read(i, *entries[i], plan_.files[i]->source()));
  if (plan_.base) piece.base = read(plan_.files.size(), *plan_.base->find(in_entry.name), plan_.base->source());
  // copy=true: the result may be the method's reused buffer, and the writer may not have taken it yet.
  const torch::Dtype out_dtype = io::dtype_from_safetensors(plan_.layout[item.tensor].dtype, first.source());
  torch::Tensor merged = plan_.method->merge(std::move(piece), opt_.params).to(out_dtype, false, true);
  // Finite inputs can still merge to Inf (a large --lambda or weight, or an output dtype too
  // narrow): checked as it streams, so nothing is written.
  if (!opt_.allow_nonfinite) refuse_nonfinite_output(merged, plan_.what, in_entry.name, item.first);
  return merged;
}

void StreamingMerge::write_tensor(io::SafetensorsWriter& writer, size_t t) {
  while (next_item_ < items_.size() && items_[next_item_].tensor == t) {
    torch::Tensor chunk = results_.take(next_item_++);
    writer.write_bytes(chunk.data_ptr(), static_cast<size_t>(chunk.numel()) * chunk.element_size());
  }
}

void StreamingMerge::stop() {
  results_.stop();
  for (auto& t : pool_)
    if (t.joinable()) t.join();
  torch::set_num_threads(torch_threads_);
}

// Provenance: the method and its parameters, every input with its weight and checksum, the base.
io::Metadata provenance(const MergePlan& plan, const MergeOptions& opt) {
  const Method& method = *plan.method;
  io::Metadata metadata{{"lofi.merge", opt.method}, {"lofi.merge.inputs", std::to_string(plan.files.size())}};
  if (nlohmann::json params = method.describe(opt.params); !params.empty()) metadata["lofi.merge.params"] = params.dump();
  for (const char* carried : {"lofi.config", "lofi.classes", "lofi.init_xxh3", "lofi.step"})  // what rebuilds, labels and places the model
    if (auto it = plan.first().metadata().find(carried); it != plan.first().metadata().end()) metadata.insert(*it);
  std::vector<const io::SafetensorsSet*> hashed;
  for (const auto& f : plan.files) hashed.push_back(f.get());
  if (plan.base) hashed.push_back(plan.base.get());
  const std::vector<std::string> checksums = opt.checksums ? checksums_of(hashed) : std::vector<std::string>(hashed.size(), "not computed");
  for (size_t i = 0; i < plan.files.size(); ++i)
    metadata["lofi.merge.input." + std::to_string(i)] =
        nlohmann::json{{"path", plan.files[i]->source()},
                       {"weight", format_general(method.normalises_weights() ? plan.weights[i] / plan.total : plan.weights[i], 9)},
                       {"xxh3", checksums[i]}}.dump();
  if (plan.base) metadata["lofi.merge.base"] = nlohmann::json{{"path", plan.base->source()}, {"xxh3", checksums.back()}}.dump();
  for (size_t i = 0; i < plan.skipped.size(); ++i) metadata["lofi.merge.skipped." + std::to_string(i)] = plan.skipped[i];
  for (const auto& [key, value] : opt.metadata) metadata[key] = value;
  return metadata;
}

// One safetensors file at PATH holding every tensor of LAYOUT.
void write_file(const std::string& path, const std::vector<io::TensorEntry>& layout, const io::Metadata& metadata,
                const io::TensorWriteFn& write_tensor) {
  io::SafetensorsWriter writer(path, layout, metadata);
  for (size_t t = 0; t < layout.size(); ++t) write_tensor(writer, t);
  writer.commit();
}

// The write step. OUT is one file, or a directory built under a temporary name and renamed into
// place at the end: Hugging Face shards (OUT/model-0000k-of-0000N.safetensors +
// model.safetensors.index.json) with --shard-size, and for model directories the weights beside
// the first input's config and tokenizer files, so eval, export and from_pretrained take it as it
// is. Returns the files written.
std::vector<std::string> write_output(const MergePlan& plan, const MergeOptions& opt, const io::Metadata& metadata,
                                      const io::TensorWriteFn& write_tensor) {
  if (!plan.dir_out && opt.shard_bytes <= 0) {
    write_file(opt.out, plan.layout, metadata, write_tensor);
    return {opt.out};
  }
  io::StagedDir out_dir(opt.out);
  std::vector<std::string> names;  // in OUT
  if (opt.shard_bytes > 0) {
    names = io::write_safetensors_shards(out_dir.path(), plan.layout, opt.shard_bytes, metadata, write_tensor);
  } else {
    write_file(out_dir.path() + "/model.safetensors", plan.layout, metadata, write_tensor);
    names.push_back("model.safetensors");
  }
  if (plan.dir_out) {
    const fs::path source = plan.used.front();
    for (const auto& name : model_dir_files())
      if (fs::exists(source / name)) {
        fs::copy_file(source / name, fs::path(out_dir.path()) / name);
        names.push_back(name);
      }
  }
  out_dir.commit();
  std::vector<std::string> outputs;
  for (const auto& name : names) outputs.push_back(out_dir.final_path() + "/" + name);
  return outputs;
}

}  // namespace

MergeResult merge_checkpoints(const MergeOptions& opt) {
  const MergePlan plan = plan_merge(opt);
  const io::Metadata metadata = provenance(plan, opt);
  StreamingMerge merge(plan, opt);  // its workers stop when it goes, a failed write included
  const std::vector<std::string> outputs =
      write_output(plan, opt, metadata, [&](io::SafetensorsWriter& writer, size_t t) { merge.write_tensor(writer, t); });
  return {plan.used, plan.skipped, outputs};
}

io::NamedTensors merge_in_memory(const Method& method, const std::vector<const io::NamedTensors*>& models,
                                 const std::vector<double>& weights, const MethodParams& params, const io::NamedTensors* base) {
  if (models.empty() || models.size() != weights.size()) fail("merge: ", models.size(), " models, ", weights.size(), " weights");
  if (method.needs_base() != (base != nullptr)) fail("merge: the method ", method.needs_base() ? "needs" : "takes no", " base model");
  check_numbers(params, weights, "merge");
  if (method.normalises_weights() && !(std::accumulate(weights.begin(), weights.end(), 0.0) > 0)) fail("merge: weights sum to 0");
  method.check(models.size(), params);
  const io::NamedTensors& first = *models[0];
  // Tensors pair by name, whatever order each file stores them in (a file re-saved by another
  // tool may list them otherwise); the sets must be equal.
  auto by_name = [&](const io::NamedTensors& m, const std::string& which) {
    std::unordered_map<std::string, const torch::Tensor*> index;
    for (const auto& [name, tensor] : m) index[name] = &tensor;
    if (index.size() != first.size() || m.size() != first.size())
      fail("merge: models differ: ", which, " has ", m.size(), " tensors, the first model ", first.size());
    for (const auto& [name, tensor] : first) {
      auto it = index.find(name);
      if (it == index.end()) fail("merge: models differ at tensor '", name, "': ", which, " has no such tensor");
      if (it->second->sizes() != tensor.sizes())
        fail("merge: models differ at tensor '", name, "': shape ", it->second->sizes(), " in ", which, ", ", tensor.sizes(),
             " in the first model");
    }
    return index;
  };
  std::vector<std::unordered_map<std::string, const torch::Tensor*>> indexes;
  for (size_t i = 0; i < models.size(); ++i) indexes.push_back(by_name(*models[i], cat("model ", i + 1)));
  std::unordered_map<std::string, const torch::Tensor*> base_index;
  if (base) base_index = by_name(*base, "the base model");
  io::NamedTensors out;
  for (const auto& [name, tensor] : first) {
    if (!tensor.is_floating_point()) {
      for (size_t i = 1; i < models.size(); ++i)
        if (!torch::equal(tensor, *indexes[i].at(name)))
          fail("merge: integer tensor '", name, "' differs between the first model and model ", i + 1);
      out.emplace_back(name, tensor.clone());
      continue;
    }
    Piece piece;
    piece.name = name;
    piece.weights = weights;
    for (const auto& index : indexes) piece.inputs.push_back(index.at(name)->contiguous().view(-1));  // (numel,)
    if (base) piece.base = base_index.at(name)->contiguous().view(-1);
    torch::Tensor merged = method.merge(std::move(piece), params).to(tensor.scalar_type(), false, true);
    refuse_nonfinite_output(merged, "merge", name, 0);
    out.emplace_back(name, merged.view(tensor.sizes()));
  }
  return out;
}

}  // namespace lofi::merge
