// `lofi report`: one self-contained HTML page for a run directory (or a directory of runs,
// such as runs/demo): training curves of every node of every run, the results table
// (results.json), interpolation plots (interpolation*.json from `lofi interpolate --json`),
// and the bytes each run communicated. Charts are inline SVG: no scripts, no network.
#pragma once
#include <string>

namespace lofi::eval {

// Colors the report draws with, exposed so tests can find each chart in a screenshot.
namespace report_colors {
inline constexpr const char* kSeries[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                          "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
inline constexpr const char* kInterpolation[] = {"#0b6e4f", "#c1121f", "#6a4c93", "#f4a261"};
inline constexpr const char* kBytes = "#3d5a80";
}  // namespace report_colors

// Writes the report to OUT (default DIR/report.html), atomically; returns its path.
std::string write_run_report(const std::string& dir, const std::string& out = "");

}  // namespace lofi::eval
