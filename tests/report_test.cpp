// The HTML run report, rendered by a real browser: headless Chromium takes a screenshot, and
// every chart must have drawn its data (its colours are on screen), not only exist in the file.
#include "lofi/eval/report.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace lofi::eval {
namespace {

// Pixels of exactly colour "#rrggbb".
int64_t count_color(const test::PngImage& image, const std::string& hex) {
  unsigned r = 0, g = 0, b = 0;
  std::sscanf(hex.c_str(), "#%02x%02x%02x", &r, &g, &b);
  int64_t n = 0;
  for (size_t i = 0; i + 2 < image.rgb.size(); i += 3) n += image.rgb[i] == r && image.rgb[i + 1] == g && image.rgb[i + 2] == b;
  return n;
}

void write_metrics(const std::string& node_dir, double scale, int64_t bytes) {
  std::filesystem::create_directories(node_dir);
  std::ofstream out(node_dir + "/metrics.jsonl");
  for (int step = 10; step <= 100; step += 10)
    out << nlohmann::json{{"step", step}, {"loss", scale * 3.0 / step + 1}, {"val_loss", scale * 3.5 / step + 1.2},
                          {"bytes_sent", bytes * step}, {"bytes_between_nodes", 0}, {"node_workers", 1}, {"seconds", step * 0.1}}
               .dump()
        << "\n";
}

TEST(Report, ChartsRenderInHeadlessChromium) {
  std::string dir = test::scratch_dir();
  write_metrics(dir + "/lofi/node-00", 1.0, 0);
  write_metrics(dir + "/lofi/node-01", 1.3, 0);
  write_metrics(dir + "/baseline/node-00", 1.1, 5000000);
  nlohmann::json points = nlohmann::json::array();
  for (int p = 0; p <= 10; ++p) points.push_back({{"alpha", p / 10.0}, {"metrics", {{"loss/val", 2 + 0.3 * (p % 3)}}}});
  std::ofstream(dir + "/interpolation-nodes.json")
      << nlohmann::json{{"from", "a.safetensors"}, {"to", "b.safetensors"}, {"points", points}, {"barrier", {{"val", 0.3}}}}.dump();
  std::ofstream(dir + "/results.json") << R"({"rows":[{"model":"lo-fi average","perplexity":{"in":4.9,"shift":117.4}}]})";

  std::string html_path = write_run_report(dir);
  std::string html;
  std::getline(std::ifstream(html_path), html, '\0');
  EXPECT_NE(html.find("lo-fi average"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);  // self-contained, static

  std::string png = dir + "/shot.png";
  std::string cmd = "timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                    "--disable-background-networking --disable-component-update --disable-sync --hide-scrollbars "
                    "--user-data-dir=" + dir + "/chromium --window-size=1400,3000 --screenshot=" + png +
                    " file://" + html_path + " > " + dir + "/chromium.log 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "chromium failed; see " << dir << "/chromium.log";
  test::PngImage shot = test::read_png(png);
  ASSERT_GT(shot.width, 0) << "unreadable screenshot " << png;
  // Training loss and held-out loss: one coloured curve per node (three nodes over two runs).
  for (int s = 0; s < 3; ++s)
    EXPECT_GT(count_color(shot, report_colors::kSeries[s]), 100) << "curve " << s << " not drawn";
  EXPECT_GT(count_color(shot, report_colors::kInterpolation[0]), 100) << "interpolation curve not drawn";
  EXPECT_GT(count_color(shot, report_colors::kBytes), 1000) << "bytes bar not drawn";
  EXPECT_LT(count_color(shot, "#ffffff"), static_cast<int64_t>(shot.width) * shot.height);  // not blank
}

TEST(Report, SurvivesDivergedAndFlatRuns) {
  std::string dir = test::scratch_dir();
  std::filesystem::create_directories(dir + "/node-00");
  std::ofstream out(dir + "/node-00/metrics.jsonl");
  out << R"({"step":1,"loss":2.0})" << "\n" << R"({"step":2,"loss":null})" << "\n"  // NaN is logged as null
      << R"({"step":3,"loss":"oops"})" << "\n" << R"({"step":4,"loss":2.0000000000000004})" << "\n";
  out.close();
  std::ofstream(dir + "/interpolation-bad.json") << R"({"points":[{"alpha":0},{"metrics":7}],"barrier":{"x":"<b>"}})";
  std::string html;
  ASSERT_NO_THROW(std::getline(std::ifstream(write_run_report(dir)), html, '\0'));
  EXPECT_NE(html.find("training loss"), std::string::npos);
  EXPECT_EQ(html.find("<b>"), std::string::npos);  // JSON text is escaped, never markup
}

TEST(Report, RefusesADirectoryWithoutRuns) {
  EXPECT_THROW(write_run_report(test::scratch_dir()), std::exception);
}

}  // namespace
}  // namespace lofi::eval
