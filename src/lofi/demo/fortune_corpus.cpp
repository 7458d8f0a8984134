#include "lofi/demo/fortune_corpus.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <xxhash.h>

#include "lofi/data/sampler.h"
#include "lofi/error.h"
#include "lofi/seed.h"

namespace lofi::demo {

namespace fs = std::filesystem;

std::string fortunes_dir() {
  const char* dir = std::getenv("LOFI_FORTUNES");
  return dir && *dir ? dir : "/usr/share/games/fortunes";
}

std::vector<std::string> fortune_categories() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fortunes_dir(), ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.find('.') == std::string::npos && name != "ascii-art") names.push_back(name);
  }
  if (ec || names.empty())
    fail(fortunes_dir(), ": no fortune files; install Debian's fortunes package (scripts/install-deps.sh does), or point ",
         "LOFI_FORTUNES at a directory of them");
  std::sort(names.begin(), names.end());
  return names;
}

FortuneTokens fortune_tokens(const std::vector<std::string>& categories, double val_fraction, uint64_t seed) {
  FortuneTokens out;
  for (const auto& category : categories) {
    const std::string path = fortunes_dir() + "/" + category;
    std::ifstream in(path, std::ios::binary);
    if (!in)
      fail(path, ": cannot read; install Debian's fortunes package (scripts/install-deps.sh does), or point LOFI_FORTUNES ",
           "at a directory of fortune files");
    const uint64_t category_seed = mix_seed(seed, XXH3_64bits(category.data(), category.size()));
    std::string line, fortune;
    int64_t index = 0;
    auto flush = [&] {
      if (fortune.empty()) return;
      fortune += "%\n";
      const uint64_t draw = mix_seed(category_seed, static_cast<uint64_t>(index++));
      auto& dest = static_cast<double>(draw >> 11) * 0x1.0p-53 < val_fraction ? out.val : out.train;
      for (unsigned char c : fortune) dest.push_back(c);
      fortune.clear();
      ++out.fortunes;
    };
    while (std::getline(in, line)) {
      if (line == "%") flush();
      else fortune += line + "\n";
    }
    flush();
  }
  return out;
}

}  // namespace lofi::demo
