#include "lofi/eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lofi/error.h"
#include "lofi/eval/projection.h"
#include "lofi/eval/results_file.h"
#include "lofi/eval/svg_chart.h"
#include "lofi/eval/table.h"
#include "lofi/eval/verdict.h"
#include "lofi/io/atomic_file.h"
#include "lofi/merge/agreement.h"
#include "lofi/run/metrics_record.h"
#include "lofi/run/run_dir.h"

namespace lofi::eval {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct NodeLog {
  std::string node;            // "node-00"
  std::vector<run::StepMetrics> records;  // its metrics.jsonl
};

struct Run {
  std::string name;            // the run's directory name
  bool pretraining = false;    // trained from scratch (its config.toml has no model.init)
  std::vector<NodeLog> nodes;
  nlohmann::json averaging_check;  // RUN/averaging-check.json (a lo-fi job's end), or null
};

// A part of the page: a directory with its runs (one level down) and its results.json. The
// report's own directory is one; so is each subdirectory that holds runs of its own (the demo's
// vision/).
struct Section {
  fs::path dir;
  std::string title;
  std::optional<ResultsFile> results;  // its results.json
  std::vector<Run> runs;
};

// A JSON number, or NaN for anything else (a diverged run logs NaN as null).
double number(const json& object, const std::string& key) {
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<double>() : std::nan("");
}

// The report is drawn from whatever a run left, so a file it cannot read is left out of the page,
// and said so on stderr, never dropped in silence.
void say_left_out(const fs::path& path, const char* why) {
  std::fprintf(stderr, "report: warning: left out %s: %s\n", path.string().c_str(), why);
}

json read_json(const fs::path& path) {
  if (!fs::exists(path)) return nullptr;
  json value = json::parse(std::ifstream(path), nullptr, false);
  if (value.is_discarded()) say_left_out(path, "not JSON (a run stopped while writing it?)");
  return value.is_discarded() ? json(nullptr) : value;
}

// Pretraining: the run's config has no model.init (a config the report cannot read is not worth
// failing the page for: it counts as fine-tuning).
bool from_scratch(const run::RunDir& run) {
  const std::optional<std::string> init = run.config_value("model.init");
  return init && init->empty();
}

// The nodes of RUN that have logged.
std::vector<run::NodeDir> logged_nodes(const run::RunDir& run) {
  std::vector<run::NodeDir> nodes;
  std::error_code ec;
  for (int64_t k : run.node_ids())
    if (fs::exists(run.node(k).metrics(), ec)) nodes.push_back(run.node(k));
  return nodes;
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
    const run::RunDir dir_of_run(c.string());
    run.pretraining = from_scratch(dir_of_run);
    run.averaging_check = read_json(dir_of_run.averaging_check());
    for (const auto& n : logged_nodes(dir_of_run)) run.nodes.push_back({n.name(), run::read_metrics(n.metrics())});
    if (!run.nodes.empty()) runs.push_back(std::move(run));
  }
  return runs;
}

std::vector<Section> find_sections(const fs::path& dir) {
  std::vector<Section> sections;
  auto add = [&](const fs::path& d, const std::string& fallback_title, std::vector<Run> runs) {
    Section s{d, fallback_title, ResultsFile::from_json(read_json(d / "results.json")), std::move(runs)};
    if (s.results && !s.results->title.empty()) s.title = s.results->title;
    if (!s.runs.empty() || s.results) sections.push_back(std::move(s));
  };
  add(dir, "", find_runs(dir));
  std::vector<fs::path> subdirs;  // not runs themselves
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && logged_nodes(run::RunDir(e.path().string())).empty()) subdirs.push_back(e.path());
  std::sort(subdirs.begin(), subdirs.end());
  for (const auto& d : subdirs)
    if (std::vector<Run> runs = find_runs(d); !runs.empty()) add(d, d.filename().string(), std::move(runs));
  return sections;
}

// The training loss ("loss") or a held-out number ("val_loss") of a record, when it has one.
std::optional<double> value_of(const run::StepMetrics& r, const std::string& key) {
  if (key == "loss") return r.loss;
  const auto it = r.validation.find(key);
  return it == r.validation.end() ? std::nullopt : std::optional<double>(it->second);
}

LineChart curve_chart(const std::vector<const Run*>& runs, const std::string& key, const std::string& title,
                      const std::string& y_label) {
  LineChart chart{title, "step", y_label, {}, false};
  size_t color = 0;
  for (const Run* run : runs)
    for (const auto& node : run->nodes) {
      Series s{run->name + " " + node.node, report_colors::kSeries[color++ % std::size(report_colors::kSeries)], {}, {}};
      for (const auto& r : node.records)
        if (const std::optional<double> y = value_of(r, key)) s.x.push_back(static_cast<double>(r.step)), s.y.push_back(*y);
      if (!s.x.empty()) chart.series.push_back(std::move(s));
    }
  return chart;
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

// ---- results.json without a "table": its rows, with readable columns in a meaningful order ----

// Nested objects become paths: {"perplexity": {"sums": 4.8}} -> {"perplexity", "sums"}.
void flatten(const json& value, std::vector<std::string>& path, std::vector<std::pair<std::vector<std::string>, json>>& out) {
  if (value.is_object()) {
    for (auto it = value.begin(); it != value.end(); ++it) {
      if (it.key() == "path") continue;
      path.push_back(it.key());
      flatten(it.value(), path, out);
      path.pop_back();
    }
  } else {
    out.emplace_back(path, value);
  }
}

std::string metric_name(const std::string& key) {
  if (key == "top1") return "top-1 %";
  if (key == "top5") return "top-5 %";
  if (key == "count") return "examples";
  std::string name = key;
  std::replace(name.begin(), name.end(), '_', ' ');
  return name;
}

// "in_distribution/top1" -> "in-dist top-1 %", "shifts/sketch/top1" -> "sketch top-1 %",
// "perplexity/sums" -> "perplexity sums", "wall_seconds" -> "wall time".
std::string column_name(const std::vector<std::string>& path) {
  if (path.size() == 1) {
    if (path[0] == "wall_seconds") return "wall time";
    if (path[0] == "shift_average_top1") return "avg shifts top-1 %";
    if (path[0] == "avg_shift_perplexity") return "avg shift perplexity";
    return metric_name(path[0]);
  }
  if (path[0] == "in_distribution") return "in-dist " + metric_name(path.back());
  if (path[0] == "shifts" && path.size() == 3) return path[1] + " " + metric_name(path[2]);
  std::string name = metric_name(path[0]);
  for (size_t i = 1; i < path.size(); ++i) name += " " + path[i];
  return name;
}

// The model first, then in-distribution, each shift, their average, bytes, time; the rest last.
int column_rank(const std::vector<std::string>& path) {
  const std::string& head = path[0];
  if (head == "model") return 0;
  if (head == "in_distribution") return 1;
  if (head == "perplexity") return 2;
  if (head == "shifts") return 3;
  if (head.find("avg") != std::string::npos || head.find("average") != std::string::npos) return 4;
  if (head.find("bytes") != std::string::npos) return 5;
  if (head.find("seconds") != std::string::npos) return 6;
  return 7;
}

std::string format_cell(const std::vector<std::string>& path, const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_number()) return v.dump();
  const double d = v.get<double>();
  const std::string& last = path.back();
  if (last.find("bytes") != std::string::npos) return format_bytes(d);
  if (last.find("seconds") != std::string::npos) return format_fixed(d, 1) + " s";
  if (last.find("top1") != std::string::npos || last.find("top5") != std::string::npos) return format_fixed(100 * d, 1);
  if (last == "count") return format_fixed(d, 0);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", d);
  return buf;
}

std::string rows_table(const json& rows) {
  std::vector<std::vector<std::string>> columns;  // paths, in first-seen order
  std::vector<std::vector<std::pair<std::vector<std::string>, json>>> flat;
  for (const auto& r : rows) {
    flat.emplace_back();
    std::vector<std::string> path;
    flatten(r, path, flat.back());
    for (const auto& [p, v] : flat.back())
      if (std::find(columns.begin(), columns.end(), p) == columns.end()) columns.push_back(p);
  }
  std::stable_sort(columns.begin(), columns.end(),
                   [](const auto& a, const auto& b) { return column_rank(a) < column_rank(b); });
  std::vector<std::string> names;
  for (const auto& c : columns) names.push_back(column_name(c));
  std::vector<std::vector<std::string>> cells;
  for (const auto& f : flat) {
    std::vector<std::string> row(columns.size());
    for (const auto& [p, v] : f) row[static_cast<size_t>(std::find(columns.begin(), columns.end(), p) - columns.begin())] = format_cell(p, v);
    cells.push_back(row);
  }
  return html_table(names, cells);
}

// A table as its run printed it: {"columns": [...], "cells": [[...], ...]}.
std::string display_table(const json& table) {
  std::vector<std::string> columns;
  if (table["columns"].is_array())
    for (const auto& c : table["columns"]) columns.push_back(c.is_string() ? c.get<std::string>() : c.dump());
  std::vector<std::vector<std::string>> cells;
  if (table["cells"].is_array())
    for (const auto& row : table["cells"]) {
      cells.emplace_back();
      if (row.is_array())
        for (const auto& c : row) cells.back().push_back(c.is_string() ? c.get<std::string>() : c.dump());
    }
  return html_table(columns, cells);
}

std::string results_html(const std::optional<ResultsFile>& results) {
  if (!results) return "";
  std::string html;
  if (!results->note.empty()) html += "<p class='note'>" + html_escape(results->note) + "</p>";
  // The table as the run printed it, when it says so; else its rows, made readable.
  if (results->table.is_null()) return html + (results->rows.empty() ? "" : rows_table(results->rows));
  html += display_table(results->table);
  if (!results->spectrum_table.is_null()) {  // the demo's second table: the communication spectrum
    html += "<h3>The communication spectrum</h3>";
    if (!results->spectrum_note.empty()) html += "<p class='note'>" + html_escape(results->spectrum_note) + "</p>";
    html += display_table(results->spectrum_table);
  }
  return html;
}

// ---- the other parts of a section ----

std::string training_html(const std::vector<Run>& runs) {
  std::vector<const Run*> finetune, pretrain;
  for (const auto& r : runs) (r.pretraining ? pretrain : finetune).push_back(&r);
  std::string html;
  auto charts = [&](const std::vector<const Run*>& group, const std::string& what) {
    if (group.empty()) return;
    std::string names;
    for (const Run* r : group) names += (names.empty() ? "" : ", ") + r->name;
    html += render_svg(curve_chart(group, "loss", what + ": training loss, every node of " + names, "loss"));
    LineChart val = curve_chart(group, "val_loss", what + ": held-out loss, every node of " + names, "held-out loss");
    if (!val.series.empty()) html += render_svg(val);
    LineChart acc = curve_chart(group, "val_acc", what + ": task accuracy (data.val_task), every node of " + names, "accuracy");
    if (!acc.series.empty()) html += render_svg(acc);
  };
  charts(finetune, "fine-tuning");
  charts(pretrain, "pretraining");
  return html;
}

// "runs/demo/lofi/merged.safetensors" -> "lofi/merged.safetensors": the path below the report's
// directory, so a node of the baseline and a node of lo-fi are told apart.
std::string model_label(const std::string& path, const fs::path& dir) {
  const fs::path p(path);
  std::error_code ec;
  const fs::path rel = fs::relative(fs::absolute(p, ec), fs::absolute(dir, ec), ec);
  if (!ec && !rel.empty() && rel.native().rfind("..", 0) != 0) return rel.string();
  return (p.parent_path().filename() / p.filename()).string();
}

std::string interpolation_html(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind("interpolation", 0) == 0 && e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) return "";
  std::string html = "<h3>Interpolation</h3><p class='note'>Loss along (1 - alpha) A + alpha B. A bump above the "
                     "straight line between the ends (the barrier) means averaging A and B is not safe.</p>";
  for (const auto& f : files) {
    json line = json::parse(std::ifstream(f), nullptr, false);
    if (!line.is_object() || !line.contains("points") || !line["points"].is_array()) {
      say_left_out(f, "not an interpolation's JSON (an object with \"points\")");
      continue;
    }
    const std::string from = line.value("from", std::string("A")), to = line.value("to", std::string("B"));
    LineChart chart{"A = " + model_label(from, dir) + ",  B = " + model_label(to, dir), "alpha", "loss", {}, false};
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
        html += " " + html_escape(it.key()) + " " + html_escape(format_cell({"barrier"}, it.value())) + " nats;";
      html += "</p>";
    }
  }
  return html;
}

// What each run's workers sent, how long it took, and that time projected across machines
// (eval/projection.h).
struct RunCost {
  double bytes_sent = 0, bytes_between = 0;  // all workers
  double per_worker_across = 0;              // bytes each worker sends between machines
  double seconds = 0;                        // the slowest node's training time
  double quality = std::nan("");             // final held-out loss: the merge's, else the nodes' mean
};

RunCost run_cost(const Run& run) {
  RunCost c;
  std::vector<std::vector<run::StepMetrics>> records;
  double val_sum = 0;
  int val_nodes = 0;
  for (const auto& node : run.nodes) {
    records.push_back(node.records);
    for (auto it = node.records.rbegin(); it != node.records.rend(); ++it)  // the last held-out loss
      if (const auto v = value_of(*it, "val_loss"); v && std::isfinite(*v)) {
        val_sum += *v, ++val_nodes;
        break;
      }
  }
  const run::RunTraffic traffic = run::run_traffic(records);
  c.bytes_sent = traffic.total, c.bytes_between = traffic.between_nodes, c.seconds = traffic.seconds;
  const double across = run.nodes.size() == 1 ? c.bytes_sent : c.bytes_between;
  c.per_worker_across = traffic.workers > 0 ? across / traffic.workers : 0;
  const json& check = run.averaging_check;
  if (check.is_object() && check.contains("average_scores") && check["average_scores"].is_object())
    c.quality = number(check["average_scores"], "val_loss");
  if (!std::isfinite(c.quality) && val_nodes > 0) c.quality = val_sum / val_nodes;
  return c;
}

std::string communication_html(const std::vector<Run>& runs) {
  BarChart chart{"bytes sent in collectives, all workers of each run", "bytes", {}, true};
  LineChart quality{"held-out loss against bytes each worker sends between machines", "bytes per worker between machines",
                    "final held-out loss", {}, false};
  std::vector<std::vector<std::string>> rows;
  size_t color = 0;
  for (const auto& run : runs) {
    const RunCost c = run_cost(run);
    chart.bars.push_back({run.name, c.bytes_sent, report_colors::kBytes});
    std::vector<std::string> row{run.name + (run.pretraining ? " (pretraining)" : ""), std::to_string(run.nodes.size()),
                                 format_bytes(c.bytes_sent), format_bytes(c.bytes_between), format_bytes(c.per_worker_across),
                                 format_fixed(c.seconds, 1) + " s"};
    for (const Link& link : projection_links())
      row.push_back(format_fixed(projected_seconds(c.seconds, c.per_worker_across, link), 1) + " s");
    rows.push_back(row);
    if (!run.pretraining && std::isfinite(c.quality))
      quality.series.push_back({run.name, report_colors::kSeries[color++ % std::size(report_colors::kSeries)],
                                {c.per_worker_across}, {c.quality}});
  }
  std::string html = "<h3>Communication</h3>" + render_svg(chart);
  if (!quality.series.empty()) html += render_svg(quality);
  std::vector<std::string> columns{"run", "nodes", "bytes sent", "bytes between nodes", "per worker between machines",
                                   "training time"};
  for (const Link& link : projection_links()) columns.push_back("projected at " + link.name);
  html += html_table(columns, rows);
  return html + "<p class='note'>Projected: measured time + 8 x (bytes each worker sends between machines) / link "
                "speed, with every worker on a machine of its own (a one-node run's all-reduce crosses machines; "
                "a run of several nodes sends only its between-node traffic across). A projection from measured "
                "numbers, not a measurement.</p>";
}

// The claims at the top of the page: the report directory's own list, else each section's.
std::string verdicts_html(const std::vector<Section>& sections) {
  json claims = json::array();
  if (!sections.empty() && sections[0].results && !sections[0].results->claims.empty()) {
    claims = sections[0].results->claims;
  } else {
    for (const auto& s : sections)
      if (s.results)
        for (const auto& c : s.results->claims) claims.push_back(c);
  }
  // Each lo-fi job's own check at its end: did the average beat every node on data.val?
  for (const auto& s : sections)
    for (const auto& run : s.runs) {
      const json& c = run.averaging_check;
      if (!c.is_object() || !c.contains("average") || !c.contains("best_node") || c.value("single_node", false)) continue;
      const bool top1 = c.value("metric", "") == "top-1";  // checks written before "label" and "scale"
      const double scale = c.value("scale", top1 ? 100.0 : 1.0);
      const std::string where = s.dir == sections[0].dir ? run.name : s.dir.filename().string() + "/" + run.name;
      const std::string on = c.value("metric", "") == "accuracy" ? "data.val_task" : "data.val";
      claims.push_back({{"half", where}, {"claim", "the average beats every node on " + on},
                        {"metric", c.value("label", top1 ? "validation top-1 %" : "validation loss")},
                        {"lofi", scale * c.value("average", 0.0)}, {"baseline", scale * c.value("best_node", 0.0)},
                        {"against", "the best node"}, {"rule", "the job's averaging check"},
                        {"holds", c.value("beats_every_node", false)}});
    }
  // How far each job's nodes agreed (merge/agreement.h): information beside the verdicts.
  std::vector<std::string> agreements;
  for (const auto& s : sections)
    for (const auto& run : s.runs) {
      const json& c = run.averaging_check;
      if (!c.is_object() || !c.contains("agreement") || !c["agreement"].is_object()) continue;
      const std::string where = s.dir == sections[0].dir ? run.name : s.dir.filename().string() + "/" + run.name;
      agreements.push_back(where + ": " + merge::agreement_text(c["agreement"]));
    }
  if (claims.empty() && agreements.empty()) return "";
  std::string html = "<div class='verdicts'><h2>Verdicts</h2><ul>";
  for (const auto& c : claims)
    if (c.is_object())
      html += std::string("<li class='") + (c.value("holds", false) ? "holds" : "fails") + "'>" +
              html_escape(verdict_sentence(c)) + "</li>";
  html += "</ul>";
  for (const auto& a : agreements) html += "<p>" + html_escape(a) + "</p>";
  return html + "</div>";
}

}  // namespace

std::string write_run_report(const std::string& dir_arg, const std::string& out_arg) {
  fs::path dir(dir_arg);
  if (!fs::is_directory(dir)) fail(dir_arg, ": not a directory");
  std::vector<Section> sections = find_sections(dir);
  size_t runs = 0;
  for (const auto& s : sections) runs += s.runs.size();
  if (runs == 0) fail(dir_arg, ": no run found (no node-*/metrics.jsonl here, one directory down, or in a subdirectory's runs)");
  std::string html =
      "<!DOCTYPE html><html><head><meta charset='utf-8'><title>lofi report: " + html_escape(dir_arg) +
      "</title><style>body{font-family:sans-serif;margin:24px;max-width:1400px}svg.chart{margin:8px;border:1px solid #ddd}"
      "table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
      "td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:13px}"
      ".verdicts li{margin:4px 0}.holds{color:#1b7a3a}.fails{color:#b3261e}</style></head><body>";
  html += "<h1>lofi report: " + html_escape(dir_arg) + "</h1>" + verdicts_html(sections);
  for (const auto& s : sections) {
    html += "<h2>" + html_escape(s.title.empty() ? "Runs" : s.title) + "</h2>";
    html += results_html(s.results);
    if (!s.runs.empty()) html += "<h3>Training</h3>" + training_html(s.runs);
    html += interpolation_html(s.dir);
    if (!s.runs.empty()) html += communication_html(s.runs);
  }
  html += "</body></html>\n";
  std::string out = out_arg.empty() ? (dir / "report.html").string() : out_arg;
  io::write_file_atomic(out, html);
  return out;
}

}  // namespace lofi::eval
