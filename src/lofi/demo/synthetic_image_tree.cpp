// Writes the generated images as an ImageFolder tree. Threads share an atomic counter over all
// (split, index) pairs; each image depends only on its (seed, split, index), so the files are the
// same for any thread count. The tree is built beside DIR and renamed into place whole, after one
// filesystem sync, which is far cheaper than an fsync per file.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "lofi/demo/synthetic_images.h"
#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/demo/png_write.h"

namespace lofi::demo {
namespace {

namespace fs = std::filesystem;
constexpr const char* kGenerator = "lofi synthetic images v1";  // bump when any image changes

nlohmann::json manifest_of(const SyntheticImageConfig& config) {
  nlohmann::json splits = nlohmann::json::object();
  for (const auto& split : synthetic_image_splits()) splits[split] = synthetic_image_count(config, split);
  return {{"generator", kGenerator},
          {"seed", config.seed},
          {"image_size", config.image_size},
          {"pretrain_train_per_class", config.pretrain_train_per_class},
          {"pretrain_val_per_class", config.pretrain_val_per_class},
          {"finetune_train_per_class", config.finetune_train_per_class},
          {"eval_per_class", config.eval_per_class},
          {"splits", splits}};
}

// DIR's manifest, or null when there is none or it is not ours.
nlohmann::json read_manifest(const std::string& dir) {
  std::string path = dir + "/manifest.json";
  if (!fs::exists(path)) return nullptr;
  nlohmann::json m = nlohmann::json::parse(io::read_text_file(path), nullptr, /*allow_exceptions=*/false);
  if (!m.is_object() || !m.contains("generator") || !m["generator"].is_string() ||
      m["generator"].get<std::string>().rfind("lofi synthetic images", 0) != 0)
    return nullptr;
  return m;
}

std::string file_name(int64_t number) {
  char name[32];
  std::snprintf(name, sizeof(name), "%05lld.png", static_cast<long long>(number));
  return name;
}

void write_whole(const std::string& path, const std::string& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail(path, ": cannot open for writing: ", std::strerror(errno));
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok) fail(path, ": write failed: ", std::strerror(errno));
}

// Every image of CONFIG under TMP, on THREADS threads; rethrows the first failure.
void generate_into(const SyntheticImageConfig& config, const std::string& tmp, int64_t threads) {
  struct Job {
    std::string split;
    int64_t begin;  // first global index of the split
  };
  std::vector<Job> jobs;
  int64_t total = 0;
  for (const auto& split : synthetic_image_splits()) {
    for (const auto& cls : synthetic_image_classes(split)) io::make_dirs(tmp + "/" + split + "/" + cls);
    jobs.push_back({split, total});
    total += synthetic_image_count(config, split);
  }
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    try {
      for (int64_t g = next++; g < total && !failed; g = next++) {
        size_t j = jobs.size() - 1;
        while (jobs[j].begin > g) --j;
        const std::string& split = jobs[j].split;
        int64_t index = g - jobs[j].begin;
        const auto& classes = synthetic_image_classes(split);
        int64_t cls = synthetic_image_label(split, index), number = index / static_cast<int64_t>(classes.size());
        write_whole(tmp + "/" + split + "/" + classes[static_cast<size_t>(cls)] + "/" + file_name(number),
                    encode_png(synthetic_image(config, split, index)));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

// Flushes the file system holding DIR, so that the rename below publishes data, not holes.
void sync_tree(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0 || ::syncfs(fd) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    fail(dir, ": cannot sync to disk: ", std::strerror(err));
  }
  ::close(fd);
}

}  // namespace

SyntheticImageTree write_synthetic_images(const SyntheticImageConfig& config, const std::string& raw_dir) {
  std::string dir = fs::path(raw_dir).lexically_normal().string();
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  nlohmann::json want = manifest_of(config);
  SyntheticImageTree result;
  for (const auto& split : synthetic_image_splits()) result.images += synthetic_image_count(config, split);
  if (read_manifest(dir) == want) return result;  // complete: the manifest is written last
  bool occupied = fs::exists(dir) && !(fs::is_directory(dir) && fs::is_empty(dir));  // rename replaces an empty dir
  if (occupied && read_manifest(dir).is_null())
    fail(dir, ": exists and is not a lofi synthetic image dataset (no matching manifest.json); remove it or choose "
              "another directory");
  for (const auto& split : synthetic_image_splits())
    if (synthetic_image_count(config, split) <= 0)
      fail("synthetic images: ", split, " needs at least one image per class, found ",
           synthetic_image_count(config, split), " images");
  synthetic_image(config, "finetune-val", 0);  // validates image_size before any thread starts

  auto start = std::chrono::steady_clock::now();
  if (fs::path(dir).has_parent_path()) io::make_dirs(fs::path(dir).parent_path().string());
  std::string tmp = dir + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  try {
    int64_t threads = config.threads > 0 ? config.threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
    generate_into(config, tmp, threads);
    write_whole(tmp + "/manifest.json", want.dump(2) + "\n");
    sync_tree(tmp);
    // An older synthetic tree moves aside first; rename then publishes the new one whole.
    std::string old = dir + ".old-" + std::to_string(::getpid());
    bool replaced = occupied;
    if (replaced) fs::rename(dir, old);
    std::error_code ec;
    fs::rename(tmp, dir, ec);
    if (ec) {
      // Another process published the same tree first: theirs is as good as ours.
      if (read_manifest(dir) != want) fail(dir, ": cannot rename the generated tree into place: ", ec.message());
      fs::remove_all(tmp);
    }
    if (replaced) fs::remove_all(old);
  } catch (...) {
    std::error_code ignore;
    fs::remove_all(tmp, ignore);
    throw;
  }
  result.generated = true;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace lofi::demo
