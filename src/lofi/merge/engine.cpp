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

}  // namespace

MergeResult merge_checkpoints(const MergeOptions& opt) {
  const Method& method = find_method(opt.method);
  const std::string what = opt.method == "average" ? "average" : "merge --method " + opt.method;
  MergeResult result;
  const std::vector<std::string> inputs = expand_inputs(opt.inputs);
  if (inputs.empty()) fail(what, ": no inputs");
  std::vector<double> weights = opt.weights.empty() ? std::vector<double>(inputs.size(), 1.0) : opt.weights;
  if (weights.size() != inputs.size())
    fail(what, ": ", weights.size(), " weights for ", inputs.size(), " inputs (run directories count one per node)");
  check_numbers(opt.params, weights, what);
  for (double w : weights)
    if (method.normalises_weights() && w < 0) fail(what, ": weights must be non-negative, found ", w);
  if (method.needs_base() && opt.base.empty())
    fail(what, ": needs --base, the model the inputs were fine-tuned from (their differences from it are merged)");
  if (!method.needs_base() && !opt.base.empty())
    fail(what, ": takes no --base (it merges the inputs themselves); leave --base out");
  // Merges of Hugging Face model directories are one too, unless OUT names a .safetensors file.
  const bool model_dirs = std::all_of(inputs.begin(), inputs.end(), is_model_dir);
  const bool dir_out = model_dirs && fs::path(opt.out).extension() != ".safetensors";
  if (model_dirs && !opt.force)
    if (std::string why = tokenizer_mismatch(inputs); !why.empty()) fail(what, ": ", why, "; pass --force to merge them anyway");
  if (model_dirs)
    if (std::string why = config_mismatch(inputs); !why.empty() && !opt.force)
      fail(what, ": ", why, "; pass --force to merge them anyway");

  // Open and check every input. Without --min-inputs any problem is fatal; with it, the input
  // is named and left out.
  std::vector<std::unique_ptr<io::SafetensorsSet>> files;
  std::vector<double> used_weights;
  auto reject = [&](const std::string& path, const std::string& why) {
    if (opt.min_inputs <= 0) fail(what, ": ", why);
    result.skipped.push_back(path + ": " + why);
  };
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::unique_ptr<io::SafetensorsSet> file;
    try {
      file = std::make_unique<io::SafetensorsSet>(inputs[i]);
    } catch (const lofi::Error& e) {
      reject(inputs[i], e.what());
      continue;
    }
    if (!files.empty()) {
      if (std::string why = layout_mismatch(*files[0], *file); !why.empty()) {
        reject(inputs[i], why);
        continue;
      }
      if (std::string why = provenance_mismatch(*files[0], *file); !why.empty() && !opt.force)
        fail(what, ": ", why, "; these were not trained alike. Pass --force to merge them anyway");
      if (std::string why = settings_mismatch(*files[0], *file, opt.config_changes); !why.empty() && !opt.force)
        fail(what, ": ", why, "; these were not trained alike. Pass --force to merge them anyway");
    }
    files.push_back(std::move(file));
    used_weights.push_back(weights[i]);
    result.used.push_back(inputs[i]);
  }
  if (opt.min_inputs > 0 && static_cast<int64_t>(files.size()) < opt.min_inputs) {
    std::string why;
    for (const auto& s : result.skipped) why += "; " + s;
    fail(what, ": only ", files.size(), " of ", inputs.size(), " inputs are usable, --min-inputs is ", opt.min_inputs, why);
  }
  const double total = std::accumulate(used_weights.begin(), used_weights.end(), 0.0);
  if (method.normalises_weights() && !(total > 0)) fail(what, ": weights sum to 0");
  method.check(files.size(), opt.params);
  std::unique_ptr<io::SafetensorsSet> base;
  if (!opt.base.empty()) {
    base = std::make_unique<io::SafetensorsSet>(opt.base);
    if (std::string why = layout_mismatch(*files[0], *base, /*same_dtypes=*/false); !why.empty())
      fail(what, ": --base ", opt.base, " is not the inputs' model: ", why);
  }

  const io::SafetensorsSet& first = *files[0];
  std::vector<io::TensorEntry> layout;
  for (const auto& t : first.tensors()) layout.push_back(*t.entry);
  if (!opt.dtype.empty()) {
    torch::Dtype out_dtype = io::dtype_from_safetensors(opt.dtype, "--dtype");
    if (!torch::isFloatingType(out_dtype)) fail("--dtype must be a float type (F64, F32, F16, BF16), found ", opt.dtype);
    for (auto& e : layout) {
      torch::Dtype in = io::dtype_from_safetensors(e.dtype, first.source());
      if (torch::isFloatingType(in)) {
        e.end = e.begin + (e.end - e.begin) / c10::elementSize(in) * c10::elementSize(out_dtype);
        e.dtype = opt.dtype;
      }
    }
  }

  // Provenance: the method and its parameters, every input with its weight and checksum, the base.
  io::Metadata metadata{{"lofi.merge", opt.method}, {"lofi.merge.inputs", std::to_string(files.size())}};
  if (nlohmann::json params = method.describe(opt.params); !params.empty()) metadata["lofi.merge.params"] = params.dump();
  for (const char* carried : {"lofi.config", "lofi.classes", "lofi.init_xxh3", "lofi.step"})  // what rebuilds, labels and places the model
    if (auto it = first.metadata().find(carried); it != first.metadata().end()) metadata.insert(*it);
  std::vector<const io::SafetensorsSet*> hashed;
  for (const auto& f : files) hashed.push_back(f.get());
  if (base) hashed.push_back(base.get());
  const std::vector<std::string> checksums = opt.checksums ? checksums_of(hashed) : std::vector<std::string>(hashed.size(), "not computed");
  for (size_t i = 0; i < files.size(); ++i)
    metadata["lofi.merge.input." + std::to_string(i)] =
        nlohmann::json{{"path", files[i]->source()},
                       {"weight", format_general(method.normalises_weights() ? used_weights[i] / total : used_weights[i], 9)},
                       {"xxh3", checksums[i]}}.dump();
  if (base) metadata["lofi.merge.base"] = nlohmann::json{{"path", base->source()}, {"xxh3", checksums.back()}}.dump();
  for (size_t i = 0; i < result.skipped.size(); ++i) metadata["lofi.merge.skipped." + std::to_string(i)] = result.skipped[i];
  for (const auto& [key, value] : opt.metadata) metadata[key] = value;

  // Work comes in chunks of at most kChunk elements, so a 400 MB embedding is not one unit
  // (unless the method needs whole tensors): workers pread each input's chunk into small reused
  // buffers and merge it, and the writer appends the results in file order. Memory stays a few
  // chunks per thread.
  constexpr int64_t kChunk = 1 << 20;
  struct Item {
    size_t tensor;
    int64_t first, count;  // elements; count -1: a whole integer tensor
  };
  std::vector<Item> items;
  for (size_t t = 0; t < layout.size(); ++t) {
    const io::TensorEntry& e = *first.tensors()[t].entry;
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    if (!torch::isFloatingType(io::dtype_from_safetensors(e.dtype, first.source()))) {
      items.push_back({t, 0, -1});
    } else if (method.whole_tensors()) {
      items.push_back({t, 0, numel});
    } else {
      for (int64_t at = 0; at < numel; at += kChunk) items.push_back({t, at, std::min(kChunk, numel - at)});
    }
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = std::max(1, std::min<int>(opt.threads > 0 ? opt.threads : cores, static_cast<int>(items.size())));
  const int torch_threads = torch::get_num_threads();
  torch::set_num_threads(1);  // parallel over chunks; torch's own threads would oversubscribe
  // Whole tensors can be large: fewer of them wait for the writer.
  OrderedResults results(items.size(), static_cast<size_t>((method.whole_tensors() ? 1 : 4) * threads));
  auto compute = [&](const Item& item) -> torch::Tensor {
    const io::TensorEntry& in_entry = *first.tensors()[item.tensor].entry;
    std::vector<const io::SafetensorsSet::Tensor*> entries;  // this tensor in each input
    for (const auto& f : files) entries.push_back(f.get() == &first ? &first.tensors()[item.tensor] : f->find(in_entry.name));
    if (item.count < 0) {  // integer tensors (step counters, ids) must agree
      torch::Tensor integers = entries[0]->file->load(in_entry);
      for (size_t i = 1; i < files.size(); ++i)
        if (!torch::equal(integers, entries[i]->file->load(*entries[i]->entry)))
          fail(what, ": integer tensor '", in_entry.name, "' differs between ", first.source(), " and ", files[i]->source());
      return integers;
    }
    // Inputs are read with pread into buffers each thread reuses (a chunk, or the largest whole
    // tensor so far): each byte is touched once, where a mapping or a fresh allocation would cost
    // a page fault per 4 KB.
    thread_local std::vector<torch::Tensor> buffers;
    auto read = [&](size_t slot, const io::SafetensorsSet::Tensor& tensor, const std::string& source) {
      const torch::Dtype dtype = io::dtype_from_safetensors(tensor.entry->dtype, source);  // the base's may differ
      torch::Tensor values = reused_buffer(buffers, slot, std::max(kChunk, item.count), dtype).narrow(0, 0, item.count);
      tensor.file->read_range(*tensor.entry, item.first, item.count, values.data_ptr());
      if (!opt.allow_nonfinite) refuse_nonfinite(values, source, in_entry.name, item.first, "--allow-nonfinite");
      return values;
    };
    Piece piece;
    piece.name = in_entry.name;
    piece.offset = item.first;
    piece.weights = used_weights;
    for (size_t i = 0; i < files.size(); ++i) piece.inputs.push_back(read(i, *entries[i], files[i]->source()));
    if (base) piece.base = read(files.size(), *base->find(in_entry.name), base->source());
    // copy=true: the result may be the method's reused buffer, and the writer may not have taken it yet.
    torch::Tensor merged =
        method.merge(std::move(piece), opt.params).to(io::dtype_from_safetensors(layout[item.tensor].dtype, first.source()), false, true);
    // Finite inputs can still merge to Inf (a large --lambda or weight, or an output dtype too
    // narrow): checked as it streams, so nothing is written.
    if (!opt.allow_nonfinite) refuse_nonfinite_output(merged, what, in_entry.name, item.first);
    return merged;
  };
  std::vector<std::thread> pool;
  auto finish_pool = [&] {
    results.stop();
    for (auto& t : pool)
      if (t.joinable()) t.join();
    torch::set_num_threads(torch_threads);
  };
  try {
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        try {
          while (auto index = results.claim()) results.put(*index, compute(items[*index]));
        } catch (...) {
          results.put_error(std::current_exception());
        }
      });
  } catch (...) {
    finish_pool();
    throw;
  }
  // Appends the chunks of LAYOUT[T] (its items start at NEXT; an empty tensor has none) to WRITER.
  size_t next = 0;
  auto write_tensor = [&](io::SafetensorsWriter& writer, size_t t) {
    while (next < items.size() && items[next].tensor == t) {
      torch::Tensor chunk = results.take(next++);
      writer.write_bytes(chunk.data_ptr(), static_cast<size_t>(chunk.numel()) * chunk.element_size());
    }
  };

  try {
    if (dir_out) {
      // A Hugging Face directory: the weights (sharded with --shard-size) beside the first input's
      // config and tokenizer files, so eval, export and from_pretrained take it as it is.
      io::StagedDir out_dir(opt.out);
      if (opt.shard_bytes > 0) {
        for (const auto& name : io::write_safetensors_shards(out_dir.path(), layout, opt.shard_bytes, metadata, write_tensor))
          result.outputs.push_back(out_dir.final_path() + "/" + name);
      } else {
        io::SafetensorsWriter writer(out_dir.path() + "/model.safetensors", layout, metadata);
        for (size_t t = 0; t < layout.size(); ++t) write_tensor(writer, t);
        writer.commit();
        result.outputs.push_back(out_dir.final_path() + "/model.safetensors");
      }
      const fs::path source = result.used.front();
      for (const auto& name : model_dir_files())
        if (fs::exists(source / name)) {
          fs::copy_file(source / name, fs::path(out_dir.path()) / name);
          result.outputs.push_back(out_dir.final_path() + "/" + name);
        }
      out_dir.commit();
    } else if (opt.shard_bytes <= 0) {
      io::SafetensorsWriter writer(opt.out, layout, metadata);
      for (size_t t = 0; t < layout.size(); ++t) write_tensor(writer, t);
      writer.commit();
      result.outputs.push_back(opt.out);
    } else {
      // Hugging Face sharding: OUT/model-0000k-of-0000N.safetensors + model.safetensors.index.json,
      // built in a temporary directory renamed into place at the end.
      io::StagedDir out_dir(opt.out);
      for (const auto& name : io::write_safetensors_shards(out_dir.path(), layout, opt.shard_bytes, metadata, write_tensor))
        result.outputs.push_back(out_dir.final_path() + "/" + name);
      out_dir.commit();
    }
  } catch (...) {
    finish_pool();
    throw;
  }
  finish_pool();
  return result;
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
