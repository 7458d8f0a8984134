// Loading speed of a safetensors checkpoint of OPT-1.3B's size into the model, beside the bounds
// it cannot beat, measured in the same run on the same file: sequential read bandwidth, memcpy
// bandwidth, and the fp16 -> fp32 conversion the load performs. Part of `make bench`, never CI.
// usage: lofi_load_bench [FILE=/tmp/lofi-bench/opt-1.3b-f16.safetensors] [DTYPE=F16]
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "lofi/error.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/causal_lm.h"
#include "lofi/model/weights.h"

namespace {

using namespace lofi;

double seconds(const std::function<void()>& f) {
  auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Fastest of REPEATS runs: the least disturbed by the other work on a shared machine.
double best_of(int repeats, const std::function<void()>& f) {
  double best = 1e300;
  for (int i = 0; i < repeats; ++i) best = std::min(best, seconds(f));
  return best;
}

model::LmConfig opt_1_3b() {
  model::LmConfig c;
  c.n_layer = 24, c.n_head = 32, c.d_model = 2048, c.d_ff = 8192, c.vocab_size = 50272, c.max_seq_len = 2048;
  return c;
}

// Writes the model's layout in DTYPE with random values, through lofi's own streaming writer.
void write_checkpoint(const std::string& path, const io::NamedTensors& weights, const std::string& dtype) {
  std::vector<io::TensorEntry> layout;
  for (const auto& [name, t] : weights) layout.push_back({name, dtype, t.sizes().vec(), 0, 0});
  torch::Tensor block = torch::randn({4 << 20}).to(io::dtype_from_safetensors(dtype, "bench"));  // reused noise
  const size_t block_bytes = static_cast<size_t>(block.numel()) * block.element_size();
  io::SafetensorsWriter writer(path, layout, {{"lofi.bench", "OPT-1.3B layout, random values"}});
  for (const auto& e : layout) {
    const size_t bytes = static_cast<size_t>(c10::multiply_integers(e.shape)) * block.element_size();
    for (size_t done = 0; done < bytes; done += block_bytes)
      writer.write_bytes(block.data_ptr(), std::min(block_bytes, bytes - done));
  }
  writer.commit();
}

bool layout_matches(const std::string& path, const io::NamedTensors& weights, const std::string& dtype) {
  if (!std::filesystem::exists(path)) return false;
  try {
    io::SafetensorsFile file(path);
    if (file.entries().size() != weights.size()) return false;
    for (const auto& [name, t] : weights) {
      const io::TensorEntry* e = file.find(name);
      if (!e || e->dtype != dtype || torch::IntArrayRef(e->shape) != t.sizes()) return false;
    }
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Drops PATH from the page cache (no root needed for a file's own clean pages) and returns the
// fraction still resident afterwards, so a "cold" row says how cold it was.
double evict(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, ": cannot open");
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  size_t size = std::filesystem::file_size(path);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return -1;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((size + page - 1) / page);
  double fraction = -1;
  if (::mincore(map, size, resident.data()) == 0)
    fraction = static_cast<double>(std::count_if(resident.begin(), resident.end(), [](unsigned char r) { return r & 1; })) /
               static_cast<double>(resident.size());
  ::munmap(map, size);
  return fraction;
}

// Plain sequential read of the whole file in 8 MB blocks: what the disk or page cache delivers.
void read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, ": cannot open");
  std::vector<char> block(8 << 20);
  while (::read(fd, block.data(), block.size()) > 0) {
  }
  ::close(fd);
}

void row(const char* what, double s, double bytes, double reference_s) {
  std::printf("  %-44s %8.3f s %8.2f GB/s %8.2fx\n", what, s, bytes / s / 1e9, s / reference_s);
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string path = argc > 1 ? argv[1] : "/tmp/lofi-bench/opt-1.3b-f16.safetensors";
  const std::string dtype = argc > 2 ? argv[2] : "F16";
  torch::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());

  model::CausalLm gpt = model::make_causal_lm(opt_1_3b());  // fp32 parameters: where the load copies to
  io::NamedTensors weights = model::module_weights(*gpt);
  if (!layout_matches(path, weights, dtype)) {
    std::printf("writing %s (OPT-1.3B layout, %s) ...\n", path.c_str(), dtype.c_str());
    double s = seconds([&] { write_checkpoint(path, weights, dtype); });
    std::printf("  written in %.1f s\n", s);
  }
  const double bytes = static_cast<double>(std::filesystem::file_size(path));
  int64_t params = 0;
  for (const auto& [name, t] : weights) params += t.numel();
  std::printf("\nload benchmark: %s, %.2f GB, %zu tensors, %.3fB parameters, %d threads\n", path.c_str(), bytes / 1e9,
              weights.size(), static_cast<double>(params) / 1e9, torch::get_num_threads());

  // Header alone: open (mmap) + parse + validate, and the JSON parse on its own.
  const int parse_repeats = 50;
  double open_s = best_of(parse_repeats, [&] { io::SafetensorsFile file(path); });
  std::string header;
  {
    uint64_t n = 0;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f || std::fread(&n, 8, 1, f) != 1) fail(path, ": cannot read the header length");
    header.resize(n);
    if (std::fread(header.data(), 1, n, f) != n) fail(path, ": cannot read the header");
    std::fclose(f);
  }
  double parse_s = best_of(parse_repeats, [&] { io::parse_safetensors_header(header, static_cast<size_t>(bytes) - 8 - header.size(), nullptr, path); });

  // The load itself, warm (the file in the page cache), as model::load_module_weights runs it.
  auto load = [&] { model::load_module_weights(*gpt, io::SafetensorsFile(path)); };
  load();  // warm the page cache and the parameters' pages
  double load_s = best_of(3, load);
  double read_s = best_of(3, [&] { read_file(path); });

  // Bounds in memory: memcpy (of 1 GiB, scaled to the file's size, to spare memory on a shared
  // machine), and the dtype conversion of the same tensors.
  const size_t copy_bytes = size_t{1} << 30;
  std::vector<char> src(copy_bytes, 1), dst(copy_bytes, 0);
  double memcpy_s = best_of(3, [&] { std::memcpy(dst.data(), src.data(), copy_bytes); }) * bytes / copy_bytes;
  src = dst = std::vector<char>();
  io::NamedTensors stored;
  {
    io::SafetensorsFile file(path);
    for (const auto& e : file.entries()) stored.emplace_back(e.name, file.load(e));
  }
  double convert_s = best_of(3, [&] {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < weights.size(); ++i) weights[i].second.copy_(stored[i].second);
  });
  stored.clear();

  std::printf("\n  %-44s %10s %13s %9s\n", "warm page cache (GB/s of file bytes)", "time", "rate", "/ read");
  row("sequential read (8 MB read() calls)", read_s, bytes, read_s);
  row("memcpy of the same bytes", memcpy_s, bytes, read_s);
  row(cat(dtype, " -> fp32 copy_ in memory").c_str(), convert_s, bytes, read_s);
  row("lofi load: open + parse + copy into the model", load_s, bytes, read_s);

  double cold_read_resident = evict(path);
  double cold_read_s = seconds([&] { read_file(path); });
  double cold_load_resident = evict(path);
  double cold_load_s = seconds(load);
  std::printf("\n  %-44s %10s %13s %9s\n", "cold (evicted with posix_fadvise)", "time", "rate", "/ read");
  row(cat("sequential read (", static_cast<int>(cold_read_resident * 100), "% cached before)").c_str(), cold_read_s, bytes,
      cold_read_s);
  row(cat("lofi load (", static_cast<int>(cold_load_resident * 100), "% cached before)").c_str(), cold_load_s, bytes,
      cold_read_s);

  std::printf("\n  header: %zu bytes; open + parse + validate %.3f ms, JSON parse + validate alone %.3f ms"
              " (%.3f%% of the warm load)\n",
              header.size(), open_s * 1e3, parse_s * 1e3, 100 * open_s / load_s);
  std::printf("  warm load / max(read, %s -> fp32 copy): %.2fx  (1.00x = bound by memory and conversion, not parsing)\n",
              dtype.c_str(), load_s / std::max(read_s, convert_s));
  std::printf("  cold load / cold read: %.2fx  (1.00x = bound by the disk)\n", cold_load_s / cold_read_s);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "lofi_load_bench: %s\n", e.what());
  return 1;
}
