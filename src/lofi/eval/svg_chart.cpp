#include "lofi/eval/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "lofi/eval/table.h"

namespace lofi::eval {
namespace {

constexpr int kLeft = 64, kRight = 16, kTop = 32, kBottom = 44;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

// A tick label with as many decimals as the tick STEP needs, so neighbours never print alike.
std::string tick_label(double v, double step) {
  char buf[32];
  double a = std::fabs(v);
  if (a != 0 && (a >= 1e6 || a < 1e-4)) {
    std::snprintf(buf, sizeof(buf), "%.2e", v);
  } else {
    int decimals = step > 0 ? std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9))) : 2;
    std::snprintf(buf, sizeof(buf), "%.*f", std::min(decimals, 6), v);
  }
  return buf;
}

double tick_step(const std::vector<double>& ticks) { return ticks.size() > 1 ? ticks[1] - ticks[0] : 0; }

// About N "nice" ticks (1, 2, 5 x 10^k steps) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int n) {
  if (!(hi - lo > 1e-9 * std::max(std::fabs(lo), std::fabs(hi)))) return {lo};  // (nearly) flat: one tick
  double raw = (hi - lo) / n, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag * (raw / mag < 1.5 ? 1 : raw / mag < 3.5 ? 2 : raw / mag < 7.5 ? 5 : 10);
  std::vector<double> ticks;
  const double first = std::ceil(lo / step) * step;
  for (int i = 0; i <= 4 * n; ++i) {  // bounded: never more than a few ticks per requested one
    double t = first + i * step;
    if (t > hi + step * 1e-9) break;
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

std::string frame(const std::string& title, const std::string& y_label, int width, int height) {
  std::string svg = "<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='" + std::to_string(width) +
                    "' height='" + std::to_string(height) + "' viewBox='0 0 " + std::to_string(width) + " " +
                    std::to_string(height) + "' font-family='sans-serif' font-size='11'>";
  svg += "<rect width='100%' height='100%' fill='#ffffff'/>";
  svg += "<text x='" + std::to_string(width / 2) + "' y='18' text-anchor='middle' font-size='13' font-weight='bold'>" +
         html_escape(title) + "</text>";
  svg += "<text transform='translate(14," + std::to_string(height / 2) + ") rotate(-90)' text-anchor='middle'>" +
         html_escape(y_label) + "</text>";
  return svg;
}

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string render_svg(const LineChart& chart, int width, int height) {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  auto ty = [&](double v) { return chart.log_y ? std::log10(std::max(v, 1e-12)) : v; };
  for (const auto& s : chart.series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (std::isfinite(s.y[i])) {
        x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
        y0 = std::min(y0, ty(s.y[i])), y1 = std::max(y1, ty(s.y[i]));
      }
  std::string svg = frame(chart.title, chart.y_label + (chart.log_y ? " (log)" : ""), width, height);
  const int pw = width - kLeft - kRight, ph = height - kTop - kBottom;
  if (!std::isfinite(x0)) return svg + "<text x='50%' y='50%' text-anchor='middle'>no data</text></svg>";
  if (!(x1 - x0 > 1e-9 * std::max(std::fabs(x0), 1.0))) x0 -= 0.5, x1 += 0.5;
  if (!(y1 - y0 > 1e-9 * std::max(std::fabs(y0), 1.0))) y0 -= 0.5, y1 += 0.5;
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  auto px = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return kTop + (1 - (ty(y) - y0) / (y1 - y0)) * ph; };
  svg += "<rect x='" + std::to_string(kLeft) + "' y='" + std::to_string(kTop) + "' width='" + std::to_string(pw) +
         "' height='" + std::to_string(ph) + "' fill='none' stroke='#888'/>";
  const auto x_ticks = nice_ticks(x0, x1, 6), y_ticks = nice_ticks(y0, y1, 5);
  for (double t : x_ticks) {
    double x = px(t);
    svg += "<line x1='" + num(x) + "' x2='" + num(x) + "' y1='" + std::to_string(kTop) + "' y2='" +
           std::to_string(kTop + ph) + "' stroke='#eee'/>";
    svg += "<text x='" + num(x) + "' y='" + std::to_string(kTop + ph + 14) + "' text-anchor='middle'>" + tick_label(t, tick_step(x_ticks)) + "</text>";
  }
  for (double t : y_ticks) {
    double y = kTop + (1 - (t - y0) / (y1 - y0)) * ph;
    svg += "<line x1='" + std::to_string(kLeft) + "' x2='" + std::to_string(kLeft + pw) + "' y1='" + num(y) + "' y2='" +
           num(y) + "' stroke='#eee'/>";
    svg += "<text x='" + std::to_string(kLeft - 4) + "' y='" + num(y + 4) + "' text-anchor='end'>" +
           (chart.log_y ? tick_label(std::pow(10.0, t), std::pow(10.0, t) / 10) : tick_label(t, tick_step(y_ticks))) + "</text>";
  }
  svg += "<text x='" + std::to_string(kLeft + pw / 2) + "' y='" + std::to_string(height - 6) + "' text-anchor='middle'>" +
         html_escape(chart.x_label) + "</text>";
  int legend_y = kTop + 12;
  for (const auto& s : chart.series) {
    std::string points;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (std::isfinite(s.y[i])) points += num(px(s.x[i])) + "," + num(py(s.y[i])) + " ";
    svg += "<polyline fill='none' stroke='" + s.color + "' stroke-width='2.5' points='" + points + "'/>";
    if (s.x.size() == 1) svg += "<circle cx='" + num(px(s.x[0])) + "' cy='" + num(py(s.y[0])) + "' r='4' fill='" + s.color + "'/>";
    svg += "<rect x='" + std::to_string(kLeft + pw - 150) + "' y='" + std::to_string(legend_y - 8) + "' width='10' height='10' fill='" +
           s.color + "'/><text x='" + std::to_string(kLeft + pw - 136) + "' y='" + std::to_string(legend_y + 1) + "'>" +
           html_escape(s.label) + "</text>";
    legend_y += 14;
  }
  return svg + "</svg>";
}

std::string render_svg(const BarChart& chart, int width, int height) {
  std::string svg = frame(chart.title, chart.y_label, width, height);
  const int pw = width - kLeft - kRight, ph = height - kTop - kBottom;
  double top = 0;
  for (const auto& b : chart.bars) top = std::max(top, b.value);
  if (top <= 0) top = 1;
  top *= 1.1;
  svg += "<rect x='" + std::to_string(kLeft) + "' y='" + std::to_string(kTop) + "' width='" + std::to_string(pw) +
         "' height='" + std::to_string(ph) + "' fill='none' stroke='#888'/>";
  const auto ticks = nice_ticks(0, top, 5);
  for (double t : ticks) {
    double y = kTop + (1 - t / top) * ph;
    svg += "<text x='" + std::to_string(kLeft - 4) + "' y='" + num(y + 4) + "' text-anchor='end'>" +
           (chart.bytes ? format_bytes(t) : tick_label(t, tick_step(ticks))) + "</text>";
  }
  const double slot = static_cast<double>(pw) / std::max<size_t>(1, chart.bars.size());
  for (size_t i = 0; i < chart.bars.size(); ++i) {
    const Bar& b = chart.bars[i];
    double h = b.value / top * ph, x = kLeft + slot * (static_cast<double>(i) + 0.2);
    svg += "<rect x='" + num(x) + "' y='" + num(kTop + ph - h) + "' width='" + num(slot * 0.6) + "' height='" + num(h) +
           "' fill='" + b.color + "'/>";
    svg += "<text x='" + num(x + slot * 0.3) + "' y='" + num(kTop + ph - h - 4) + "' text-anchor='middle'>" +
           (chart.bytes ? format_bytes(b.value) : tick_label(b.value, 0)) + "</text>";
    svg += "<text x='" + num(x + slot * 0.3) + "' y='" + std::to_string(kTop + ph + 14) + "' text-anchor='middle'>" +
           html_escape(b.label) + "</text>";
  }
  return svg + "</svg>";
}

}  // namespace lofi::eval
