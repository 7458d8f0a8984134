// `lofi report`: one self-contained HTML page for a run directory (or a directory of runs,
// such as runs/demo). At the top, the verdicts of results.json's claims; then a section for the
// directory and one for each subdirectory holding runs of its own (the demo's vision/): its
// results table (results.json's "table" as printed, else its rows with readable columns: in-
// distribution, each shift, their average, bytes, time), training curves of every node with
// pretraining (runs whose config has no model.init) apart from fine-tuning, interpolation plots
// (interpolation*.json from `lofi interpolate --json`), and the bytes each run communicated.
// Charts are inline SVG: no scripts, no network.
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
