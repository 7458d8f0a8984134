// The library's layers depend one way: a directory under src/lofi/ includes only from its own
// directory and from layers below it, as its #include "lofi/..." lines show. A line that reaches up
// (train/ into eval/, say) fails here, naming the file and the line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>

namespace lofi {
namespace {

namespace fs = std::filesystem;

// Lower layers first; a layer may include from any layer of a lower rank, not from its own rank.
const std::map<std::string, int>& layer_ranks() {
  static const std::map<std::string, int> ranks = {
      {"", 0},                                             // error.h, seed.h, strings.h: used everywhere
      {"io", 1},          {"tensorboard", 1},              // files and formats
      {"run", 2},                                          // the run directory's layout
      {"kernels", 2},                                      // fused ops over LibTorch (model/, train/ call them)
      {"data", 3},        {"model", 3},    {"dist", 3},    {"merge", 3},
      {"eval", 4},                                         // metrics, tables, the report
      {"train", 4},                                        // the loop, optimizer, schedule, checkpoints
      {"family", 5},                                       // a kind of model: its task, evaluator, scorer
      {"demo", 6},
  };
  return ranks;
}

// "io" for src/lofi/io/x.h and "lofi/io/x.h"; "" for a file directly under lofi/.
std::string layer_of(const std::string& relative) {
  const auto slash = relative.find('/');
  return slash == std::string::npos ? "" : relative.substr(0, slash);
}

TEST(Layers, IncludesRunOneWay) {
  const fs::path src = fs::path(LOFI_FIXTURES) / ".." / ".." / "src" / "lofi";
  ASSERT_TRUE(fs::is_directory(src)) << src;
  const std::regex include_line("\\s*#\\s*include\\s+\"lofi/([^\"]+)\".*");
  int files = 0, includes = 0;
  for (const auto& entry : fs::recursive_directory_iterator(src)) {
    const std::string ext = entry.path().extension().string();
    if (!entry.is_regular_file() || (ext != ".h" && ext != ".cpp")) continue;
    ++files;
    const std::string relative = fs::relative(entry.path(), src).generic_string();
    const std::string from = layer_of(relative);
    ASSERT_TRUE(layer_ranks().count(from)) << relative << ": src/lofi/" << from
                                           << "/ is a layer this test does not know; give it a rank here";
    std::ifstream in(entry.path());
    int line_no = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      std::smatch m;
      if (!std::regex_match(line, m, include_line)) continue;
      ++includes;
      const std::string to = layer_of(m[1].str());
      ASSERT_TRUE(layer_ranks().count(to)) << relative << ":" << line_no << " includes an unknown layer: " << line;
      if (to == from) continue;
      EXPECT_LT(layer_ranks().at(to), layer_ranks().at(from))
          << relative << ":" << line_no << " (" << (from.empty() ? "lofi" : from) << "/) reaches up or sideways into "
          << to << "/: " << line;
    }
  }
  EXPECT_GT(files, 100);  // the tree was found and read
  EXPECT_GT(includes, 300);
}

}  // namespace
}  // namespace lofi
