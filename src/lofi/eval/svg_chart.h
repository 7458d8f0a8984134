// Line and bar charts as inline SVG, for the self-contained HTML run report. Hand-written:
// the report must render with no scripts and no network, and no maintained C++ plotting
// library is packaged for Debian; a chart here is axes, ticks, polylines and a legend.
#pragma once
#include <string>
#include <vector>

namespace lofi::eval {

struct Series {
  std::string label;
  std::string color;                // "#rrggbb"
  std::vector<double> x, y;
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  bool log_y = false;
};

struct Bar {
  std::string label;
  double value = 0;
  std::string color;
};

struct BarChart {
  std::string title, y_label;
  std::vector<Bar> bars;
  bool bytes = false;  // tick labels as KB/MB/GB
};

std::string render_svg(const LineChart& chart, int width = 640, int height = 320);
std::string render_svg(const BarChart& chart, int width = 640, int height = 320);

// Escapes text for HTML and SVG.
std::string html_escape(const std::string& text);

}  // namespace lofi::eval
