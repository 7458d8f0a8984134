#include "lofi/merge/average.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <thread>
#include <toml++/toml.h>
#include <unistd.h>

#include "lofi/error.h"
#include "lofi/merge/nonfinite.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/io/safetensors_set.h"

namespace lofi::merge {
namespace fs = std::filesystem;
namespace {

std::string node_final(const fs::path& run, int64_t k) {
  char name[32];
  std::snprintf(name, sizeof(name), "node-%02lld", static_cast<long long>(k));
  return (run / name / "final.safetensors").string();
}

// The dtype a float tensor is summed in: fp32 for half precision, fp64 otherwise.
torch::Dtype accumulator_dtype(torch::Dtype input) {
  return input == torch::kFloat16 || input == torch::kBFloat16 ? torch::kFloat32 : torch::kFloat64;
}

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

// Checks that OTHER holds exactly FIRST's tensors; returns an error or "".
std::string layout_mismatch(const io::SafetensorsSet& first, const io::SafetensorsSet& other) {
  for (const auto& t : first.tensors()) {
    const io::TensorEntry& e = *t.entry;
    const auto* found = other.find(e.name);
    if (!found) return cat("tensor '", e.name, "' is in ", first.source(), " but not in ", other.source());
    const io::TensorEntry* o = found->entry;
    if (o->shape != e.shape || o->dtype != e.dtype)
      return cat("tensor '", e.name, "' is ", e.dtype, " ", torch::IntArrayRef(e.shape), " in ", first.source(), " but ",
                 o->dtype, " ", torch::IntArrayRef(o->shape), " in ", other.source());
  }
  for (const auto& o : other.tensors())
    if (!first.find(o.entry->name)) return cat("tensor '", o.entry->name, "' is in ", other.source(), " but not in ", first.source());
  return "";
}

// Checks that OTHER was trained like FIRST as far as both say: the same pretrained start, steps
// and node count (lofi's metadata); returns what differs, or "".
std::string provenance_mismatch(const io::SafetensorsSet& first, const io::SafetensorsSet& other) {
  for (const char* key : {"lofi.init_xxh3", "lofi.step", "lofi.nodes"}) {
    auto a = first.metadata().find(key), b = other.metadata().find(key);
    if (a != first.metadata().end() && b != other.metadata().end() && a->second != b->second)
      return cat(first.source(), " has ", key, " = ", a->second, " but ", other.source(), " has ", b->second);
  }
  return "";
}

// Checks that OTHER was trained with FIRST's settings (their lofi.config, compared by CHANGES);
// returns what differs, or "".
std::string settings_mismatch(const io::SafetensorsSet& first, const io::SafetensorsSet& other,
                              const std::function<std::vector<std::string>(const std::string&, const std::string&)>& changes) {
  if (!changes) return "";
  auto a = first.metadata().find("lofi.config"), b = other.metadata().find("lofi.config");
  if (a == first.metadata().end() || b == other.metadata().end()) return "";
  const std::vector<std::string> differ = changes(a->second, b->second);
  if (differ.empty()) return "";
  std::string list;
  for (const auto& d : differ) list += (list.empty() ? "" : ", ") + d;
  return cat(other.source(), " was trained with other settings than ", first.source(), ": ", list);
}

// A directory of Hugging Face weights (one file or shards), as opposed to a run directory.
bool is_weights_dir(const fs::path& dir) {
  return fs::exists(dir / "model.safetensors") || fs::exists(dir / "model.safetensors.index.json");
}

// What a Hugging Face model directory holds beside its weights: the model's config and its tokenizer.
const std::vector<std::string> kModelFiles = {"config.json", "generation_config.json", "tokenizer.json",
                                              "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                                              "merges.txt", "added_tokens.json"};

bool is_model_dir(const std::string& path) { return fs::is_directory(path) && is_weights_dir(path) && fs::exists(fs::path(path) / "config.json"); }

// Inputs that are all Hugging Face model directories must share their tokenizer; returns what
// differs, or "".
std::string tokenizer_mismatch(const std::vector<std::string>& inputs) {
  for (const char* name : {"tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json"})
    for (size_t i = 1; i < inputs.size(); ++i) {
      const fs::path a = fs::path(inputs[0]) / name, b = fs::path(inputs[i]) / name;
      if (fs::exists(a) != fs::exists(b) || (fs::exists(a) && io::read_text_file(a.string()) != io::read_text_file(b.string())))
        return cat(name, " differs between ", inputs[0], " and ", inputs[i], ": the models do not share a tokenizer");
    }
  return "";
}

}  // namespace

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const auto& input : inputs) {
    fs::path run(input);
    if (!fs::is_directory(run) || is_weights_dir(run)) {
      out.push_back(input);
      continue;
    }
    // How many nodes the run has: its config.toml, or the one a dist.node_id job wrote in its node.
    int64_t nodes = 0;
    std::vector<fs::path> configs{run / "config.toml"};
    for (const auto& entry : fs::directory_iterator(run))
      if (entry.is_directory()) configs.push_back(entry.path() / "config.toml");
    for (const auto& config : configs) {
      if (nodes > 0 || !fs::exists(config)) continue;
      try {
        nodes = toml::parse_file(config.string())["dist"]["nodes"].value_or(int64_t{0});
      } catch (const toml::parse_error&) {
      }
    }
    std::vector<int64_t> ids;
    for (int64_t k = 0; k < nodes; ++k) ids.push_back(k);
    for (const auto& entry : fs::directory_iterator(run)) {
      std::string name = entry.path().filename().string();
      if (entry.is_directory() && name.rfind("node-", 0) == 0 && name.size() > 5 &&
          name.find_first_not_of("0123456789", 5) == std::string::npos)
        ids.push_back(std::stoll(name.substr(5)));
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    if (ids.empty()) fail(input, ": a directory with no node-*/ subdirectories and no config.toml; not a run directory");
    for (int64_t k : ids) out.push_back(node_final(run, k));
  }
  return out;
}

AverageResult average_checkpoints(const AverageOptions& opt) {
  AverageResult result;
  const std::vector<std::string> inputs = expand_inputs(opt.inputs);
  if (inputs.empty()) fail("average: no inputs");
  std::vector<double> weights = opt.weights.empty() ? std::vector<double>(inputs.size(), 1.0) : opt.weights;
  if (weights.size() != inputs.size())
    fail("average: ", weights.size(), " weights for ", inputs.size(), " inputs (run directories count one per node)");
  for (double w : weights)
    if (!(w >= 0)) fail("average: weights must be non-negative, found ", w);
  // Averages of Hugging Face model directories are one too, unless OUT names a .safetensors file.
  const bool model_dirs = std::all_of(inputs.begin(), inputs.end(), is_model_dir);
  const bool dir_out = model_dirs && fs::path(opt.out).extension() != ".safetensors";
  if (model_dirs && !opt.force)
    if (std::string why = tokenizer_mismatch(inputs); !why.empty()) fail("average: ", why, "; pass --force to average them anyway");

  // Open and check every input. Without --min-inputs any problem is fatal; with it, the input
  // is named and left out.
  std::vector<std::unique_ptr<io::SafetensorsSet>> files;
  std::vector<double> used_weights;
  auto reject = [&](const std::string& path, const std::string& why) {
    if (opt.min_inputs <= 0) fail("average: ", why);
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
        fail("average: ", why, "; these were not trained alike. Pass --force to average them anyway");
      if (std::string why = settings_mismatch(*files[0], *file, opt.config_changes); !why.empty() && !opt.force)
        fail("average: ", why, "; these were not trained alike. Pass --force to average them anyway");
    }
    files.push_back(std::move(file));
    used_weights.push_back(weights[i]);
    result.used.push_back(inputs[i]);
  }
  if (opt.min_inputs > 0 && static_cast<int64_t>(files.size()) < opt.min_inputs) {
    std::string why;
    for (const auto& s : result.skipped) why += "; " + s;
    fail("average: only ", files.size(), " of ", inputs.size(), " inputs are usable, --min-inputs is ", opt.min_inputs, why);
  }
  const double total = std::accumulate(used_weights.begin(), used_weights.end(), 0.0);
  if (!(total > 0)) fail("average: weights sum to 0");

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

  io::Metadata metadata{{"lofi.merge", "average"}, {"lofi.merge.inputs", std::to_string(files.size())}};
  for (const char* carried : {"lofi.config", "lofi.classes", "lofi.init_xxh3", "lofi.step"})  // what rebuilds, labels and places the model
    if (auto it = first.metadata().find(carried); it != first.metadata().end()) metadata.insert(*it);
  std::vector<std::string> checksums(files.size());
  {
    std::vector<std::thread> hashers;
    std::atomic<size_t> next_file{0};
    std::mutex error_mu;
    std::exception_ptr error;
    for (unsigned t = 0; t < std::max(1u, std::thread::hardware_concurrency()); ++t)
      hashers.emplace_back([&] {
        try {
          for (size_t i; opt.checksums && (i = next_file++) < files.size();) checksums[i] = files[i]->checksum();
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (!error) error = std::current_exception();
        }
      });
    for (auto& h : hashers) h.join();
    if (error) std::rethrow_exception(error);
  }
  for (size_t i = 0; i < files.size(); ++i) {
    char w[32];
    std::snprintf(w, sizeof(w), "%.9g", used_weights[i] / total);
    metadata["lofi.merge.input." + std::to_string(i)] =
        nlohmann::json{{"path", files[i]->source()}, {"weight", w}, {"xxh3", opt.checksums ? checksums[i] : "not computed"}}.dump();
  }
  for (size_t i = 0; i < result.skipped.size(); ++i) metadata["lofi.merge.skipped." + std::to_string(i)] = result.skipped[i];
  for (const auto& [key, value] : opt.metadata) metadata[key] = value;

  // Work comes in chunks of at most kChunk elements, so a 400 MB embedding is not one unit:
  // workers pread each input's chunk into small reused buffers and sum it, and the writer appends
  // the results in file order. Memory stays a few chunks per thread.
  constexpr int64_t kChunk = 1 << 20;
  struct Item {
    size_t tensor;
    int64_t first, count;  // elements; count -1: a whole integer tensor
  };
  std::vector<Item> items;
  std::vector<size_t> items_per_tensor(layout.size(), 0);
  for (size_t t = 0; t < layout.size(); ++t) {
    const io::TensorEntry& e = *first.tensors()[t].entry;
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    if (!torch::isFloatingType(io::dtype_from_safetensors(e.dtype, first.source()))) {
      items.push_back({t, 0, -1});
    } else {
      for (int64_t at = 0; at < numel; at += kChunk) items.push_back({t, at, std::min(kChunk, numel - at)});
    }
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = std::max(1, std::min<int>(opt.threads > 0 ? opt.threads : cores, static_cast<int>(items.size())));
  const int torch_threads = torch::get_num_threads();
  torch::set_num_threads(1);  // parallel over chunks; torch's own threads would oversubscribe
  OrderedResults results(items.size(), static_cast<size_t>(4 * threads));
  auto compute = [&](const Item& item) -> torch::Tensor {
    const io::TensorEntry& in_entry = *first.tensors()[item.tensor].entry;
    std::vector<const io::SafetensorsSet::Tensor*> entries;  // this tensor in each input
    for (const auto& f : files) entries.push_back(f.get() == &first ? &first.tensors()[item.tensor] : f->find(in_entry.name));
    if (item.count < 0) {  // integer tensors (step counters, ids) must agree
      torch::Tensor base = entries[0]->file->load(in_entry);
      for (size_t i = 1; i < files.size(); ++i)
        if (!torch::equal(base, entries[i]->file->load(*entries[i]->entry)))
          fail("average: integer tensor '", in_entry.name, "' differs between ", first.source(), " and ", files[i]->source());
      return base;
    }
    torch::Dtype in_dtype = io::dtype_from_safetensors(in_entry.dtype, first.source());
    // Inputs are read with pread into buffers each thread reuses: each byte is touched once,
    // where a mapping, or a fresh allocation, would cost a page fault per 4 KB.
    thread_local std::map<torch::Dtype, torch::Tensor> buffers;
    auto buffer = [&](torch::Dtype dtype) {
      torch::Tensor& b = buffers[dtype];
      if (!b.defined() || b.numel() < item.count) b = torch::empty({kChunk}, dtype);
      return b.narrow(0, 0, item.count);
    };
    torch::Tensor sum = buffer(accumulator_dtype(in_dtype));
    torch::Tensor in = in_dtype == sum.scalar_type() ? torch::empty({item.count}, in_dtype) : buffer(in_dtype);
    for (size_t i = 0; i < files.size(); ++i) {
      entries[i]->file->read_range(*entries[i]->entry, item.first, item.count, in.data_ptr());
      if (!opt.allow_nonfinite) refuse_nonfinite(in, files[i]->source(), in_entry.name, item.first, "--allow-nonfinite");
      if (in_dtype == torch::kFloat32) {
        // By hand: LibTorch's mixed-dtype in-place add (fp64 += w * fp32) takes a generic
        // casting path; this loop vectorises.
        double* acc = sum.data_ptr<double>();
        const float* x = in.data_ptr<float>();
        const double w = used_weights[i];
        if (i == 0)
          for (int64_t j = 0; j < item.count; ++j) acc[j] = w * static_cast<double>(x[j]);
        else
          for (int64_t j = 0; j < item.count; ++j) acc[j] += w * static_cast<double>(x[j]);
      } else if (i == 0) {
        sum.copy_(in).mul_(used_weights[0]);
      } else {
        sum.add_(in, used_weights[i]);
      }
    }
    // copy=true: SUM is this thread's reused buffer, and the writer may not have taken it yet.
    return sum.div_(total).to(io::dtype_from_safetensors(layout[item.tensor].dtype, first.source()), false, true);
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
      for (const auto& name : kModelFiles)
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

io::NamedTensors weighted_average(const std::vector<const io::NamedTensors*>& models, const std::vector<double>& weights) {
  if (models.empty() || models.size() != weights.size()) fail("weighted_average: ", models.size(), " models, ", weights.size(), " weights");
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  if (!(total > 0)) fail("weighted_average: weights sum to 0");
  io::NamedTensors out;
  const io::NamedTensors& first = *models[0];
  for (size_t t = 0; t < first.size(); ++t) {
    const auto& [name, base] = first[t];
    for (const auto* m : models)
      if (m->size() != first.size() || (*m)[t].first != name || (*m)[t].second.sizes() != base.sizes())
        fail("weighted_average: models differ at tensor '", name, "'");
    if (!base.is_floating_point()) {
      out.emplace_back(name, base.clone());
      continue;
    }
    torch::Tensor sum = base.to(accumulator_dtype(base.scalar_type()), false, true).mul_(weights[0]);
    for (size_t i = 1; i < models.size(); ++i) sum.add_((*models[i])[t].second.to(sum.scalar_type()), weights[i]);
    out.emplace_back(name, sum.div_(total).to(base.scalar_type()));
  }
  return out;
}

void average_files(const std::vector<std::string>& inputs, const std::vector<double>& weights, const std::string& out) {
  AverageOptions options;
  options.inputs = inputs;
  options.weights = weights;
  options.out = out;
  average_checkpoints(options);
}

}  // namespace lofi::merge
