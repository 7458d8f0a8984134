// The threaded loader: batches independent of the thread count, prefetch bounded, skip versus
// fail on an unreadable image, errors naming the path, eval order, and per-thread torch threads.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "lofi/data/image_folder.h"
#include "lofi/data/image_decode.h"
#include "lofi/data/image_loader.h"
#include "lofi/error.h"
#include "test_util.h"

namespace lofi::data {
namespace {
namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(LOFI_FIXTURES) / "images";

// Three classes of four images each (JPEG and PNG of several layouts); BAD adds a truncated file.
std::string make_folder(bool bad) {
  std::string root = test::scratch_dir();
  const char* files[] = {"rgb.jpg", "gray.png", "palette.png", "progressive.jpg"};
  for (const char* cls : {"a", "b", "c"}) {
    fs::create_directories(fs::path(root) / cls);
    for (const char* f : files) fs::copy_file(kFixtures / f, fs::path(root) / cls / f);
  }
  if (bad) fs::copy_file(kFixtures / "truncated.jpg", fs::path(root) / "b" / "broken.jpg");
  return root;
}

AugmentConfig small_augment() {
  AugmentConfig c;
  c.image_size = 8;
  return c;
}

BatchIndices every_other(int64_t n, int64_t batch) {
  return [n, batch](int64_t step) {
    std::vector<int64_t> out;
    for (int64_t i = 0; i < batch; ++i) out.push_back((step * 7 + i * 3) % n);
    return out;
  };
}

std::vector<ImageBatch> take(ImageLoader& loader, int steps) {
  std::vector<ImageBatch> out;
  for (int i = 0; i < steps; ++i) out.push_back(*loader.next());
  return out;
}

TEST(ImageLoader, SameBatchesForOneAndThreeThreads) {
  ImageFolder folder(make_folder(false));
  LoaderConfig config;
  config.seed = 42;
  config.threads = 1;
  ImageLoader one(folder.samples(), small_augment(), config, every_other(folder.size(), 5), /*first_step=*/3);
  config.threads = 3;
  config.prefetch = 2;
  ImageLoader three(folder.samples(), small_augment(), config, every_other(folder.size(), 5), 3);
  auto a = take(one, 6), b = take(three, 6);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].step, 3 + static_cast<int64_t>(i));
    EXPECT_EQ(a[i].images.sizes(), (std::vector<int64_t>{5, 3, 8, 8}));
    EXPECT_TRUE(a[i].images.equal(b[i].images)) << "step " << a[i].step;
    EXPECT_TRUE(a[i].labels.equal(b[i].labels));
  }
  // Labels follow the indices; augmentation differs between steps.
  EXPECT_EQ(a[0].labels[0].item<int64_t>(), folder.samples()[(3 * 7) % 12].label);
  EXPECT_FALSE(a[0].images.equal(a[1].images));
  // A loader started at a later step (a resumed run) reproduces that step's batch.
  ImageLoader resumed(folder.samples(), small_augment(), config, every_other(folder.size(), 5), 5);
  EXPECT_TRUE(resumed.next()->images.equal(a[2].images));
}

TEST(ImageLoader, PrefetchesAheadButNoFurther) {
  ImageFolder folder(make_folder(false));
  std::atomic<int64_t> highest{-1};
  auto indices = [&](int64_t step) {
    highest = std::max<int64_t>(highest, step);
    return std::vector<int64_t>{step % 12};
  };
  LoaderConfig config;
  config.prefetch = 3;
  ImageLoader loader(folder.samples(), small_augment(), config, indices);
  EXPECT_EQ(highest, 2);  // steps 0, 1, 2 scheduled before the trainer asks
  loader.next();
  EXPECT_EQ(highest, 3);
  loader.next();
  EXPECT_EQ(highest, 4);
}

TEST(ImageLoader, SkipSubstitutesDeterministicallyAndCounts) {
  ImageFolder folder(make_folder(true));
  int64_t broken = 0;
  while (folder.samples()[static_cast<size_t>(broken)].path.find("broken") == std::string::npos) ++broken;
  auto indices = [broken](int64_t step) { return std::vector<int64_t>{0, broken, step % 13}; };
  LoaderConfig config;
  config.threads = 2;
  ImageLoader a(folder.samples(), small_augment(), config, indices, 0, 2);
  config.threads = 1;
  ImageLoader b(folder.samples(), small_augment(), config, indices, 0, 2);
  auto first = a.next(), again = b.next();
  ASSERT_EQ(first->bad_paths.size(), 1u);
  EXPECT_NE(first->bad_paths[0].find("broken.jpg"), std::string::npos);
  EXPECT_EQ(first->images.size(0), 3);
  EXPECT_TRUE(first->images.equal(again->images));
  EXPECT_TRUE(first->labels.equal(again->labels));
  EXPECT_EQ(a.skipped(), 1);
  a.next();
  EXPECT_EQ(a.skipped(), 2);
  EXPECT_FALSE(a.next().has_value());  // num_steps = 2
}

TEST(ImageLoader, FailThrowsInTheCallerNamingThePath) {
  ImageFolder folder(make_folder(true));
  LoaderConfig config;
  config.on_bad_image = "fail";
  config.threads = 3;
  auto all = [n = folder.size()](int64_t) {
    std::vector<int64_t> out;
    for (int64_t i = 0; i < n; ++i) out.push_back(i);
    return out;
  };
  ImageLoader loader(folder.samples(), small_augment(), config, all);
  std::string error = test::error_of([&] { loader.next(); });
  EXPECT_NE(error.find("broken.jpg"), std::string::npos) << error;
  // The destructor still stops and joins the workers, with batches in flight.
}

TEST(ImageLoader, EvalVisitsEachImageOnceInOrder) {
  ImageFolder folder(make_folder(true));  // 13 images, one unreadable
  LoaderConfig config;
  config.threads = 2;
  auto loader = make_eval_loader(folder, small_augment(), config, 5);
  std::vector<int64_t> sizes, labels;
  int64_t rows = 0;
  while (auto batch = loader->next()) {
    sizes.push_back(batch->images.size(0));
    rows += batch->labels.size(0);
    for (int64_t i = 0; i < batch->labels.size(0); ++i) labels.push_back(batch->labels[i].item<int64_t>());
  }
  EXPECT_EQ(rows, 12);            // the broken image is dropped, not replaced
  EXPECT_EQ(loader->skipped(), 1);
  EXPECT_EQ(sizes.size(), 3u);    // 5, 5, 3 scheduled; one of them lost the broken image
  EXPECT_TRUE(std::is_sorted(labels.begin(), labels.end()));
  // Eval batches are the eval transform of each image, in folder order.
  AugmentConfig aug = small_augment();
  auto again = make_eval_loader(folder, aug, config, 4);
  auto first = again->next();
  EXPECT_TRUE(first->images[0].equal(eval_transform(decode_image(folder.samples()[0].path), aug)));

  config.on_bad_image = "fail";
  auto strict = make_eval_loader(folder, small_augment(), config, 5);
  std::string error = test::error_of([&] {
    while (strict->next()) {
    }
  });
  EXPECT_NE(error.find("broken.jpg"), std::string::npos) << error;
}

TEST(ImageLoader, WorkersRunTorchSingleThreadedWithoutChangingTheCaller) {
  // The loader limits OpenMP in its own threads only; the trainer's setting must survive.
  int before = at::get_num_threads();
  {
    ImageFolder folder(make_folder(false));
    ImageLoader loader(folder.samples(), small_augment(), LoaderConfig{}, every_other(folder.size(), 4));
    take(loader, 3);
  }
  EXPECT_EQ(at::get_num_threads(), before);
  int in_new_thread = 0;
  std::thread([&] { in_new_thread = at::get_num_threads(); }).join();
  EXPECT_EQ(in_new_thread, before);
}

TEST(ImageLoader, OneTorchThreadHoldsInThatThreadAlone) {
  int before = at::get_num_threads();
  int inside = -1, after_parallel_op = -1;
  std::thread([&] {
    use_one_torch_thread();
    inside = at::get_num_threads();
    // A large reduction goes through at::parallel_for, whose lazy per-thread initialisation
    // must not undo the setting.
    EXPECT_EQ(torch::ones({1 << 22}).sum().item<float>(), static_cast<float>(1 << 22));
    after_parallel_op = at::get_num_threads();
  }).join();
  EXPECT_EQ(inside, 1);
  EXPECT_EQ(after_parallel_op, 1);
  EXPECT_EQ(at::get_num_threads(), before);
}

TEST(ImageLoader, BadSettingsAreNamed) {
  ImageFolder folder(make_folder(false));
  LoaderConfig config;
  config.on_bad_image = "ignore";
  std::string error = test::error_of([&] { ImageLoader(folder.samples(), small_augment(), config, every_other(12, 2)); });
  EXPECT_NE(error.find("on_bad_image"), std::string::npos) << error;
  auto out_of_range = [](int64_t) { return std::vector<int64_t>{99}; };
  error = test::error_of([&] { ImageLoader(folder.samples(), small_augment(), LoaderConfig{}, out_of_range); });
  EXPECT_NE(error.find("99"), std::string::npos) << error;
}

}  // namespace
}  // namespace lofi::data
