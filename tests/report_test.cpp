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
  // The baseline's one worker sent 500 MB in 10 s: + 8 x 5e8 / link speed when it is a machine.
  const size_t baseline_row = html.find("<td>baseline</td>");
  ASSERT_NE(baseline_row, std::string::npos);
  EXPECT_NE(html.find("<td>10.0 s</td><td>50.0 s</td><td>14.0 s</td><td>10.4 s</td>", baseline_row), std::string::npos)
      << html.substr(baseline_row, 400);
  EXPECT_NE(html.find("held-out loss against bytes each worker sends between machines"), std::string::npos);

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

std::string read_all(const std::string& path) {
  std::string text;
  std::getline(std::ifstream(path), text, '\0');
  return text;
}

void write_run(const std::string& run_dir, const std::string& init) {
  write_metrics(run_dir + "/node-00", 1.0, 0);
  std::ofstream(run_dir + "/config.toml") << "[model]\ninit = \"" << init << "\"\n";
}

// The demo's shape: language runs at the top, vision runs in vision/, claims in results.json.
TEST(Report, OnePageForBothHalvesWithTheVerdictsFirst) {
  const std::string dir = test::scratch_dir();
  write_run(dir + "/pretrain", "");
  write_run(dir + "/baseline", dir + "/pretrained.safetensors");
  write_run(dir + "/lofi", dir + "/pretrained.safetensors");
  write_run(dir + "/vision/pretrain", "");
  write_run(dir + "/vision/lofi", dir + "/vision/pretrained.safetensors");
  const nlohmann::json claim{{"half", "vision"}, {"claim", "the lo-fi average matches the baseline in-distribution"},
                             {"metric", "top-1 %"}, {"baseline", 33.0}, {"lofi", 26.4}, {"against", "the baseline"},
                             {"rule", "a match is within 1 point of the baseline"}, {"holds", false}};
  std::ofstream(dir + "/results.json") << nlohmann::json{
      {"title", "Language: fine-tuning"}, {"note", "Perplexity, lower is better."},
      {"table", {{"columns", {"model", "ppl sums (in-dist)", "bytes sent"}}, {"cells", {{"lo-fi average", "4.973", "0 B"}}}}},
      {"rows", {{{"model", "lo-fi average"}, {"perplexity", {{"sums", 4.97312}}}}}},
      {"claims", {claim}}}.dump();
  std::ofstream(dir + "/vision/results.json") << nlohmann::json{
      {"title", "Vision: fine-tuning a ViT"},
      {"table", {{"columns", {"model", "in-dist top-1"}}, {"cells", nlohmann::json::array({nlohmann::json::array({"baseline (data-parallel)", "33.0"})})}}}}.dump();
  std::ofstream(dir + "/interpolation-nodes.json") << nlohmann::json{
      {"from", dir + "/lofi/node-00/final.safetensors"}, {"to", dir + "/baseline/node-00/final.safetensors"},
      {"points", {{{"alpha", 0}, {"metrics", {{"loss/sums", 2.0}}}}, {{"alpha", 1}, {"metrics", {{"loss/sums", 2.1}}}}}}}.dump();

  std::ofstream(dir + "/lofi/averaging-check.json")
      << R"({"metric":"loss","average":1.25,"best_node":1.2,"beats_every_node":false,"nodes":{"0":1.2},)"
         R"("agreement":{"mean":0.5,"lowest":{"tensor":"w","cosine":0.25},"tensors":{"w":0.25,"v":0.75}}})";
  const std::string html = read_all(write_run_report(dir));
  EXPECT_NE(html.find("lofi: the average beats every node on data.val: does not hold (validation loss: lo-fi 1.25, the "
                      "best node 1.2; the job&#39;s averaging check)"),
            std::string::npos)
      << html.substr(0, 3000);
  // And how far its nodes agreed.
  EXPECT_NE(html.find("lofi: nodes&#39; changes agree: mean cosine 0.500 over 2 tensors (lowest 0.250, w)"), std::string::npos);
  const size_t verdicts = html.find("Verdicts"), language = html.find("<h2>Language: fine-tuning</h2>"),
               vision = html.find("<h2>Vision: fine-tuning a ViT</h2>");
  ASSERT_NE(verdicts, std::string::npos);
  ASSERT_NE(language, std::string::npos);
  ASSERT_NE(vision, std::string::npos);
  EXPECT_LT(verdicts, language);
  EXPECT_LT(language, vision);
  EXPECT_NE(html.find("vision: the lo-fi average matches the baseline in-distribution: does not hold (top-1 %: lo-fi 26.4, "
                      "the baseline 33; a match is within 1 point of the baseline)"),
            std::string::npos);
  // Each half's table as printed (its column names and cells), not its raw keys.
  EXPECT_NE(html.find("<th>ppl sums (in-dist)</th>"), std::string::npos);
  EXPECT_EQ(html.find("perplexity.sums"), std::string::npos);
  EXPECT_NE(html.find("<td>33.0</td>"), std::string::npos);
  // Pretraining apart from fine-tuning, in both halves.
  EXPECT_NE(html.find("fine-tuning: training loss, every node of baseline, lofi<"), std::string::npos) << html;
  EXPECT_NE(html.find("pretraining: training loss, every node of pretrain<"), std::string::npos);
  EXPECT_NE(html.find("fine-tuning: training loss, every node of lofi<"), std::string::npos);
  // The interpolation plot names its models by their place in the run directory.
  EXPECT_NE(html.find("A = lofi/node-00/final.safetensors,  B = baseline/node-00/final.safetensors"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir + "/vision/report.html"));  // one page
}

// results.json without a table: its rows with readable names, one unit per metric, in the order
// in-distribution, each shift, their average, bytes, time.
TEST(Report, ReadableColumnsFromRows) {
  const std::string dir = test::scratch_dir();
  write_metrics(dir + "/node-00", 1.0, 0);
  std::ofstream(dir + "/results.json") << R"({"rows":[{"wall_seconds":32.3,"bytes_sent":1654426800,"model":"baseline",
    "shift_average_top1":0.209,"shifts":{"sketch":{"top1":0.088}},"in_distribution":{"top1":0.33,"count":500}}]})";
  const std::string html = read_all(write_run_report(dir));
  const std::vector<std::string> order{"<th>model</th>", "<th>in-dist top-1 %</th>", "<th>sketch top-1 %</th>",
                                       "<th>avg shifts top-1 %</th>", "<th>bytes sent</th>", "<th>wall time</th>"};
  size_t at = 0;
  for (const auto& th : order) {
    const size_t found = html.find(th);
    ASSERT_NE(found, std::string::npos) << th;
    EXPECT_GT(found, at) << th << " out of order";
    at = found;
  }
  for (const char* cell : {"<td>33.0</td>", "<td>8.8</td>", "<td>20.9</td>", "<td>1.7 GB</td>", "<td>32.3 s</td>", "<td>500</td>"})
    EXPECT_NE(html.find(cell), std::string::npos) << cell;
}

TEST(Report, RefusesADirectoryWithoutRuns) {
  EXPECT_THROW(write_run_report(test::scratch_dir()), std::exception);
}

}  // namespace
}  // namespace lofi::eval

namespace lofi::eval {
namespace {

TEST(Report, TaskAccuracyHasItsCurveAndTheCheckItsLabel) {
  const std::string dir = test::scratch_dir();
  for (int node = 0; node < 2; ++node) {
    std::filesystem::create_directories(dir + "/lofi/node-0" + std::to_string(node));
    std::ofstream out(dir + "/lofi/node-0" + std::to_string(node) + "/metrics.jsonl");
    for (int step = 10; step <= 30; step += 10)
      out << nlohmann::json{{"step", step}, {"loss", 2.0 / step}, {"val_acc", 0.5 + step / 100.0 + node / 50.0}, {"seconds", step * 0.1}}.dump()
          << "\n";
  }
  std::ofstream(dir + "/lofi/averaging-check.json")
      << R"({"metric": "accuracy", "label": "data.val_task accuracy %", "scale": 100, "average": 0.84, "best_node": 0.82,)"
         R"( "beats_every_node": true, "nodes": {"0": 0.8, "1": 0.82}})";
  std::string html;
  std::getline(std::ifstream(write_run_report(dir)), html, '\0');
  EXPECT_NE(html.find("task accuracy (data.val_task), every node of lofi"), std::string::npos);
  EXPECT_NE(html.find("data.val_task accuracy %"), std::string::npos);
  EXPECT_NE(html.find("the average beats every node on data.val_task: holds (data.val_task accuracy %: lo-fi 84, the best node 82"),
            std::string::npos);  // in percent
}

}  // namespace
}  // namespace lofi::eval
