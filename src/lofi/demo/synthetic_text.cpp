#include "lofi/demo/synthetic_text.h"

#include "lofi/demo/draws.h"
#include "lofi/data/sampler.h"
#include "lofi/error.h"

namespace lofi::demo {
namespace {

const char* const kDeterminers[] = {"the", "a", "one", "every", "some", "that", "this", "my", "our", "her"};
const char* const kAdjectives[] = {"small", "red", "quiet", "old", "bright", "heavy", "quick", "green", "cold",
                                   "strange", "tall", "soft", "dark", "happy", "empty", "warm"};
const char* const kNouns[] = {"cat", "river", "teacher", "house", "garden", "machine", "bird", "city", "road",
                              "window", "farmer", "letter", "engine", "forest", "child", "boat", "market", "song"};
const char* const kVerbs[] = {"sees", "finds", "builds", "carries", "paints", "follows", "opens", "moves",
                              "watches", "counts", "leaves", "keeps", "likes", "hears"};
const char* const kPlaces[] = {"near the hill", "by the sea", "in the morning", "at night", "after the rain",
                               "before noon", "on the bridge", "under the tree"};

std::string general_line(Draws& d) {
  switch (d.below(4)) {
    case 0:
      return std::string(d.pick(kDeterminers)) + " " + d.pick(kAdjectives) + " " + d.pick(kNouns) + " " +
             d.pick(kVerbs) + " " + d.pick(kDeterminers) + " " + d.pick(kNouns) + " " + d.pick(kPlaces) + ".\n";
    case 1: {  // counting, so digits are familiar before fine-tuning
      int64_t start = d.below(200), n = 3 + d.below(5);
      std::string line = "count:";
      for (int64_t i = 0; i < n; ++i) line += " " + std::to_string(start + i);
      return line + ".\n";
    }
    case 2:
      return "there are " + std::to_string(d.below(100)) + " " + d.pick(kNouns) + "s " + d.pick(kPlaces) + ".\n";
    default:
      return std::string(d.pick(kDeterminers)) + " " + d.pick(kNouns) + " is " + d.pick(kAdjectives) + " and " +
             d.pick(kAdjectives) + ".\n";
  }
}

std::string sum_line(Draws& d, const std::string& style) {
  const int64_t hi = style == "sums-long" ? 1000 : 100, lo = style == "sums-long" ? 100 : 0;
  int64_t a = lo + d.below(hi - lo), b = lo + d.below(hi - lo);
  std::string sa = std::to_string(a), sb = std::to_string(b), sc = std::to_string(a + b);
  if (style == "sums-spaced") return sa + " + " + sb + " = " + sc + "\n";
  if (style == "sums-qa") return "Q: what is " + sa + " plus " + sb + "? A: " + sc + "\n";
  return sa + "+" + sb + "=" + sc + "\n";
}

}  // namespace

std::vector<std::string> synthetic_corpus_names() {
  return {"general", "sums", "sums-spaced", "sums-long", "sums-qa"};
}

std::vector<uint32_t> synthetic_corpus(const std::string& name, int64_t tokens, uint64_t seed) {
  bool known = false;
  for (const auto& n : synthetic_corpus_names()) known |= n == name;
  if (!known) fail("unknown synthetic corpus '", name, "'");
  uint64_t name_hash = 1469598103934665603ull;  // FNV-1a: stable across platforms, unlike std::hash
  for (unsigned char c : name) name_hash = (name_hash ^ c) * 1099511628211ull;
  Draws draws(mix_seed(seed, name_hash));
  std::vector<uint32_t> ids;
  ids.reserve(static_cast<size_t>(tokens) + 64);
  while (static_cast<int64_t>(ids.size()) < tokens) {
    std::string line = name == "general" ? general_line(draws) : sum_line(draws, name);
    for (unsigned char c : line) ids.push_back(c);
  }
  return ids;
}

}  // namespace lofi::demo
