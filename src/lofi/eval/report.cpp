#include "lofi/eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lofi/error.h"
#include "lofi/eval/svg_chart.h"
#include "lofi/eval/table.h"
#include "lofi/io/atomic_file.h"

namespace lofi::eval {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct NodeLog {
  std::string node;            // "node-00"
  std::vector<json> records;   // metrics.jsonl lines
};

struct Run {
  std::string name;            // path relative to the report's directory ("." for itself)
  std::vector<NodeLog> nodes;
};

// A JSON number, or NaN for anything else (a diverged run logs NaN as null).
double number(const json& object, const std::string& key) {
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<double>() : std::nan("");
}

std::vector<json> read_jsonl(const fs::path& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    json record = json::parse(line, nullptr, false);
    if (record.is_object()) out.push_back(std::move(record));
  }
  return out;
}

std::vector<Run> find_runs(const fs::path& dir) {
  std::vector<fs::path> candidates{dir};
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) candidates.push_back(e.path());
  std::sort(candidates.begin() + 1, candidates.end());
  std::vector<Run> runs;
  for (const auto& c : candidates) {
    Run run;
    run.name = c == dir ? dir.filename().string() : c.filename().string();
    std::vector<fs::path> nodes;
    for (const auto& e : fs::directory_iterator(c))
      if (e.is_directory() && e.path().filename().string().rfind("node-", 0) == 0 && fs::exists(e.path() / "metrics.jsonl"))
        nodes.push_back(e.path());
    std::sort(nodes.begin(), nodes.end());
    for (const auto& n : nodes) run.nodes.push_back({n.filename().string(), read_jsonl(n / "metrics.jsonl")});
    if (!run.nodes.empty()) runs.push_back(std::move(run));
  }
  return runs;
}

LineChart curve_chart(const std::vector<Run>& runs, const std::string& key, const std::string& title) {
  LineChart chart{title, "step", key, {}, false};
  size_t color = 0;
  for (const auto& run : runs)
    for (const auto& node : run.nodes) {
      Series s{runs.size() > 1 ? run.name + " " + node.node : node.node,
               report_colors::kSeries[color++ % std::size(report_colors::kSeries)], {}, {}};
      for (const auto& r : node.records)
        if (r.contains(key) && std::isfinite(number(r, "step"))) s.x.push_back(number(r, "step")), s.y.push_back(number(r, key));
      if (!s.x.empty()) chart.series.push_back(std::move(s));
    }
  return chart;
}

// Nested objects become dotted columns: {"perplexity": {"sums": 4.8}} -> "perplexity.sums".
void flatten(const json& value, const std::string& prefix, std::vector<std::pair<std::string, json>>& out) {
  if (value.is_object()) {
    for (auto it = value.begin(); it != value.end(); ++it)
      if (it.key() != "path") flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
  } else {
    out.emplace_back(prefix, value);
  }
}

std::string format_cell(const std::string& column, const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) {
    double d = v.get<double>();
    if (column.find("bytes") != std::string::npos) return format_bytes(d);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.4g", d);
    return buf;
  }
  return v.dump();
}

std::string html_table(const std::vector<std::string>& columns, const std::vector<std::vector<std::string>>& rows) {
  std::string html = "<table><tr>";
  for (const auto& c : columns) html += "<th>" + html_escape(c) + "</th>";
  html += "</tr>";
  for (const auto& row : rows) {
    html += "<tr>";
    for (const auto& cell : row) html += "<td>" + html_escape(cell) + "</td>";
    html += "</tr>";
  }
  return html + "</table>";
}

std::string results_section(const fs::path& dir) {
  fs::path path = dir / "results.json";
  if (!fs::exists(path)) return "";
  json results = json::parse(std::ifstream(path), nullptr, false);
  const json* rows = results.contains("rows") ? &results["rows"] : results.contains("results") ? &results["results"] : nullptr;
  if (!rows || !rows->is_array()) return "";
  std::vector<std::string> columns;
  std::vector<std::vector<std::pair<std::string, json>>> flat;
  for (const auto& r : *rows) {
    flat.emplace_back();
    flatten(r, "", flat.back());
    for (const auto& [k, v] : flat.back())
      if (std::find(columns.begin(), columns.end(), k) == columns.end()) columns.push_back(k);
  }
  if (auto model = std::find(columns.begin(), columns.end(), "model"); model != columns.end())
    std::rotate(columns.begin(), model, model + 1);  // the row's name first
  std::vector<std::vector<std::string>> cells;
  for (const auto& f : flat) {
    std::vector<std::string> row(columns.size());
    for (const auto& [k, v] : f) row[static_cast<size_t>(std::find(columns.begin(), columns.end(), k) - columns.begin())] = format_cell(k, v);
    cells.push_back(row);
  }
  return "<h2>Results</h2>" + html_table(columns, cells);
}

std::string interpolation_section(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind("interpolation", 0) == 0 && e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) return "";
  std::string html = "<h2>Interpolation</h2><p>Loss along (1 - alpha) A + alpha B. A bump above the straight "
                     "line between the ends (the barrier) means averaging A and B is not safe.</p>";
  for (const auto& f : files) {
    json line = json::parse(std::ifstream(f), nullptr, false);
    if (!line.is_object() || !line.contains("points")) continue;
    LineChart chart{fs::path(line.value("from", "A")).parent_path().filename().string() + "/" +
                        fs::path(line.value("from", "A")).filename().string() + "  ->  " +
                        fs::path(line.value("to", "B")).parent_path().filename().string() + "/" +
                        fs::path(line.value("to", "B")).filename().string(),
                    "alpha", "loss", {}, false};
    if (!line["points"].is_array()) continue;
    std::vector<std::string> metrics;
    for (const auto& p : line["points"])
      if (p.is_object() && p.contains("metrics") && p.at("metrics").is_object())
        for (auto it = p.at("metrics").begin(); it != p.at("metrics").end(); ++it)
          if (std::find(metrics.begin(), metrics.end(), it.key()) == metrics.end()) metrics.push_back(it.key());
    for (size_t m = 0; m < metrics.size(); ++m) {
      Series s{metrics[m], report_colors::kInterpolation[m % std::size(report_colors::kInterpolation)], {}, {}};
      for (const auto& p : line["points"])
        if (p.is_object() && p.contains("metrics") && p.at("metrics").is_object() && p.at("metrics").contains(metrics[m]))
          s.x.push_back(number(p, "alpha")), s.y.push_back(number(p.at("metrics"), metrics[m]));
      chart.series.push_back(std::move(s));
    }
    html += render_svg(chart);
    if (line.contains("barrier") && line["barrier"].is_object()) {
      html += "<p class='note'>barrier height:";
      for (auto it = line["barrier"].begin(); it != line["barrier"].end(); ++it)
        html += " " + html_escape(it.key()) + " " + html_escape(format_cell("", it.value())) + " nats;";
      html += "</p>";
    }
  }
  return html;
}

std::string bytes_section(const std::vector<Run>& runs) {
  BarChart chart{"bytes sent in collectives, all workers", "bytes", {}, true};
  std::vector<std::vector<std::string>> rows;
  for (const auto& run : runs) {
    double total = 0, between = 0, seconds = 0;
    for (const auto& node : run.nodes) {
      if (node.records.empty()) continue;
      const json& last = node.records.back();
      auto or_zero = [&](const std::string& key, double fallback) {
        double v = number(last, key);
        return std::isfinite(v) ? v : fallback;
      };
      double workers = or_zero("node_workers", 1.0);
      total += or_zero("bytes_sent", 0) * workers;
      between += or_zero("bytes_between_nodes", 0) * workers;
      seconds = std::max(seconds, or_zero("seconds", 0));
    }
    chart.bars.push_back({run.name, total, report_colors::kBytes});
    rows.push_back({run.name, std::to_string(run.nodes.size()), format_bytes(total), format_bytes(between),
                    format_cell("", seconds) + " s"});
  }
  return "<h2>Communication</h2>" + render_svg(chart) +
         html_table({"run", "nodes", "bytes sent", "bytes between nodes", "training time"}, rows);
}

}  // namespace

std::string write_run_report(const std::string& dir_arg, const std::string& out_arg) {
  fs::path dir(dir_arg);
  if (!fs::is_directory(dir)) fail(dir_arg, ": not a directory");
  std::vector<Run> runs = find_runs(dir);
  if (runs.empty()) fail(dir_arg, ": no run found (no node-*/metrics.jsonl here or one directory down)");
  std::string html =
      "<!DOCTYPE html><html><head><meta charset='utf-8'><title>lofi report: " + html_escape(dir_arg) +
      "</title><style>body{font-family:sans-serif;margin:24px;max-width:1400px}svg.chart{margin:8px;border:1px solid #ddd}"
      "table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
      "td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:13px}</style></head><body>";
  html += "<h1>lofi report: " + html_escape(dir_arg) + "</h1><p class='note'>";
  for (const auto& run : runs) html += html_escape(run.name) + ": " + std::to_string(run.nodes.size()) + " node(s). ";
  html += "</p><h2>Training</h2>";
  html += render_svg(curve_chart(runs, "loss", "training loss, every node"));
  LineChart val = curve_chart(runs, "val_loss", "held-out loss, every node");
  if (!val.series.empty()) html += render_svg(val);
  html += results_section(dir) + interpolation_section(dir) + bytes_section(runs) + "</body></html>\n";
  std::string out = out_arg.empty() ? (dir / "report.html").string() : out_arg;
  io::write_file_atomic(out, html);
  return out;
}

}  // namespace lofi::eval
