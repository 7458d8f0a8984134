#include "test_util.h"

#include <png.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <vector>
#include <filesystem>
#include <fstream>

#include "lofi/demo/synthetic_text.h"
#include "lofi/data/token_shards.h"
#include "lofi/error.h"
#include "lofi/io/safetensors.h"

namespace lofi::test {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const lofi::Error& e) {
    return e.what();
  }
  return "";
}

namespace {

// Scratch directories of passed tests are removed when the test ends; a failed test's stay, named
// in its output, for a look at what it left.
class ScratchCleanup : public ::testing::EmptyTestEventListener {
 public:
  static ScratchCleanup& instance() {
    static ScratchCleanup* listener = [] {
      auto* l = new ScratchCleanup;
      ::testing::UnitTest::GetInstance()->listeners().Append(l);  // gtest owns it from here
      return l;
    }();
    return *listener;
  }
  void add(const std::filesystem::path& dir) { dirs_.push_back(dir); }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    for (const auto& dir : dirs_) {
      if (info.result()->Passed()) {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      } else {
        std::printf("test scratch kept: %s\n", dir.c_str());
      }
    }
    dirs_.clear();
  }

 private:
  std::vector<std::filesystem::path> dirs_;
};

}  // namespace

std::string scratch_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "." + info->name();
  for (char& c : name)
    if (c == '/') c = '_';
  // The pid keeps test runs of several checkouts on one machine out of each other's way.
  auto dir = std::filesystem::temp_directory_path() / ("lofi-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ScratchCleanup::instance().add(dir);
  return dir.string();
}

namespace {

CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) result.output.append(buf.data(), n);
  int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace

CommandResult run_shell(const std::string& command) { return run_command(command); }

CommandResult run_lofi(const std::string& args, const std::string& env) {
  return run_command(env + " " + LOFI_BIN + " " + args + " 2>&1");
}

CommandResult run_python(const std::string& script, const std::string& args) {
  return run_command(std::string(LOFI_TEST_PYTHON) + " " + LOFI_FIXTURES + "/" + script + " " + args + " 2>&1");
}

std::string write_corpus(const std::string& dir, const std::string& name, int64_t tokens, uint64_t seed) {
  std::string path = dir + "/" + name + ".bin";
  data::write_token_shard(path, demo::synthetic_corpus(name, tokens, seed));
  return path;
}

std::string write_fixture_tokens(const std::string& dir) {
  std::vector<uint32_t> ids;
  for (uint32_t i = 0; i < 4000; ++i) ids.push_back((i * 7 + i / 13) % 64);
  const std::string path = dir + "/tokens.bin";
  data::write_token_shard(path, ids);
  return path;
}

std::string tiny_train_flags(const std::string& data, const std::string& run_dir) {
  return "--set data.train=" + data + " --set run.dir=" + run_dir +
         " --set model.n_layer=2 --set model.n_head=2 --set model.d_model=32 --set model.d_ff=64"
         " --set model.max_seq_len=16 --set data.seq_len=16 --set train.batch_size=8 --set train.steps=6"
         " --set train.warmup_steps=2 --set train.log_every=2 --set train.threads=1 --set dist.timeout_s=60";
}

PngImage read_png(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) return {};
  image.format = PNG_FORMAT_RGB;
  PngImage out;
  out.rgb.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, out.rgb.data(), 0, nullptr)) return {};
  out.width = static_cast<int>(image.width);
  out.height = static_cast<int>(image.height);
  return out;
}

double max_abs_diff(const std::string& a, const std::string& b) {
  io::SafetensorsFile fa(a), fb(b);
  EXPECT_EQ(fa.entries().size(), fb.entries().size());
  double worst = 0;
  for (const auto& e : fa.entries())
    worst = std::max(worst, (fa.load(e) - fb.load(e.name)).abs().max().item<double>());
  return worst;
}

nlohmann::json last_metrics(const std::string& node_dir) {
  std::ifstream in(node_dir + "/metrics.jsonl");
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return nlohmann::json::parse(last);
}

long peak_rss_kb(const std::vector<std::string>& args) {
  // A child started from this process takes this process's peak as its own starting point (Linux
  // carries the peak across fork and exec), so a small Python process starts lofi and reports
  // lofi's own peak, from wait4.
  std::string command = "MALLOC_MMAP_THRESHOLD_=131072 " + std::string(LOFI_TEST_PYTHON) +
                        " -c 'import os, subprocess, sys\n"
                        "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
                        "_, status, usage = os.wait4(p.pid, 0)\n"
                        "print(usage.ru_maxrss if status == 0 else -1)' " LOFI_BIN;
  for (const auto& a : args) command += " '" + a + "'";
  const CommandResult r = run_command(command);
  EXPECT_EQ(r.status, 0) << r.output;
  const long kb = std::atol(r.output.c_str());
  EXPECT_GT(kb, 0) << "lofi failed: " << command;
  return kb;
}

}  // namespace lofi::test
