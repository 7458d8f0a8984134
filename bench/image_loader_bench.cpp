// Image loader throughput: images/s (and per thread) of decode + DeiT training augmentation on
// generated images, at 1 and 2 loader threads, for 256x256 JPEGs -> 224 crops and 64x64 PNGs ->
// 32 crops; plus decode alone. Compare with the model's training images/s: the loader keeps the
// trainer fed when its rate on the cores it gets exceeds the model's. Never run by CI.
#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "lofi/data/image_decode.h"
#include "lofi/data/image_folder.h"
#include "lofi/data/image_loader.h"
#include "lofi/error.h"

namespace fs = std::filesystem;
using namespace lofi::data;

namespace {

// Smooth gradients with noise, like photographs compress: (H, W, 3) uint8.
std::vector<uint8_t> make_pixels(int size, int seed) {
  std::vector<uint8_t> px(static_cast<size_t>(size) * size * 3);
  uint32_t state = static_cast<uint32_t>(seed) * 2654435761u + 1;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < 3; ++c) {
        state = state * 1664525u + 1013904223u;
        int v = (x * (c + 1) + y * (3 - c) + seed * 17) % 256 + static_cast<int>(state >> 28) - 8;
        px[(static_cast<size_t>(y) * size + x) * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0, 255));
      }
  return px;
}

void write_jpeg(const std::string& path, const std::vector<uint8_t>& px, int size) {
  tjhandle tj = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long bytes = 0;
  if (tjCompress2(tj, px.data(), size, 0, size, TJPF_RGB, &out, &bytes, TJSAMP_420, 90, 0) != 0)
    lofi::fail(path, ": JPEG encoding failed: ", tjGetErrorStr2(tj));
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(out), static_cast<std::streamsize>(bytes));
  tjFree(out);
  tjDestroy(tj);
}

void write_png(const std::string& path, const std::vector<uint8_t>& px, int size) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = image.height = static_cast<png_uint_32>(size);
  image.format = PNG_FORMAT_RGB;
  if (!png_image_write_to_file(&image, path.c_str(), 0, px.data(), 0, nullptr))
    lofi::fail(path, ": PNG encoding failed: ", image.message);
}

std::string make_dataset(const std::string& dir, const std::string& ext, int size, int count) {
  for (int i = 0; i < count; ++i) {
    fs::path cls = fs::path(dir) / ("class" + std::to_string(i % 4));
    fs::create_directories(cls);
    std::string path = (cls / ("img" + std::to_string(i) + ext)).string();
    if (fs::exists(path)) continue;
    auto px = make_pixels(size, i);
    ext == ".jpg" ? write_jpeg(path, px, size) : write_png(path, px, size);
  }
  return dir;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// CPU seconds of the whole process (all threads): images per CPU second is the rate per core,
// which, unlike wall time, holds on a machine shared with other work.
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

void bench(const std::string& name, const std::string& root, int64_t crop, int64_t batch, int64_t steps) {
  ImageFolder folder(root);
  auto t0 = std::chrono::steady_clock::now();
  double c0 = cpu_seconds();
  int64_t decoded = 0;
  for (const auto& s : folder.samples()) decoded += decode_image(s.path).size(0) > 0;
  std::printf("%-22s decode only, 1 thread: %8.0f images/s, %8.0f images per CPU second\n", name.c_str(),
              static_cast<double>(decoded) / seconds_since(t0), static_cast<double>(decoded) / (cpu_seconds() - c0));
  for (int64_t threads : {1, 2}) {
    AugmentConfig augment;
    augment.image_size = crop;
    LoaderConfig config;
    config.threads = threads;
    config.prefetch = 4;
    auto indices = [n = folder.size(), batch](int64_t step) {
      std::vector<int64_t> out;
      for (int64_t i = 0; i < batch; ++i) out.push_back((step * batch + i) % n);
      return out;
    };
    ImageLoader loader(folder.samples(), augment, config, indices);
    loader.next();  // warm-up: threads started, first batch done
    t0 = std::chrono::steady_clock::now();
    c0 = cpu_seconds();
    for (int64_t s = 0; s < steps; ++s) loader.next();
    auto images = static_cast<double>(steps * batch);
    double rate = images / seconds_since(t0);
    std::printf("%-22s decode+augment, %ld thread(s): %8.0f images/s, %8.0f images/s per thread, %8.0f images per CPU second\n",
                name.c_str(), static_cast<long>(threads), rate, rate / static_cast<double>(threads),
                images / (cpu_seconds() - c0));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/tmp/lofi-bench/images";
  try {
    bench("256px JPEG -> 224", make_dataset(dir + "/jpeg256", ".jpg", 256, 128), 224, 32, 24);
    bench("64px PNG -> 32", make_dataset(dir + "/png64", ".png", 64, 256), 32, 128, 24);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "image bench: %s\n", e.what());
    return 1;
  }
  std::printf("the trainer keeps up when this rate, on the cores the loader gets, exceeds the model's images/s\n");
}
