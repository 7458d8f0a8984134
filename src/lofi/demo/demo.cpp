#include "lofi/demo/demo.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "lofi/data/token_shards.h"
#include "lofi/demo/claims.h"
#include "lofi/demo/fortune_corpus.h"
#include "lofi/demo/runs.h"
#include "lofi/demo/vision_demo.h"
#include "lofi/dist/device.h"
#include "lofi/dist/launcher.h"
#include "lofi/error.h"
#include "lofi/eval/report.h"
#include "lofi/eval/table.h"
#include "lofi/eval/verdict.h"
#include "lofi/family/lm_evaluator.h"
#include "lofi/io/atomic_file.h"
#include "lofi/merge/interpolate.h"
#include "lofi/run/run_dir.h"
#include "lofi/train/trainer.h"

namespace lofi::demo {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Real text (demo/fortune_corpus.h): fine-tuning on one category of Debian's fortunes, shifts to
// three others (a neighbouring domain, a distant one, verse), pretraining on all the rest.
const char* const kFinetuneSet = "computers";
const char* const kShiftSets[] = {"linux", "science", "songs-poems"};
constexpr double kValFraction = 0.1;
constexpr uint64_t kSplitSeed = 20260;

// The demo model: small enough for a 2-core machine, large enough to learn the task.
train::Config base_config(const std::string& out) {
  train::Config c;
  c.model.n_layer = 4;
  c.model.n_head = 4;
  c.model.d_model = 128;
  c.model.d_ff = 512;
  c.model.vocab_size = 256;
  c.model.max_seq_len = 64;
  c.data.seq_len = 64;
  c.train.batch_size = 32;
  c.train.log_every = 25;
  c.train.seed = 1234;
  c.dist.timeout_s = 600;
  c.run.dir = out;
  return c;
}

std::string data_path(const std::string& out, const std::string& name, const std::string& split) {
  return out + "/data/fortunes/" + name + "." + split + ".bin";
}

// Token shards of the general corpus (every category but the fine-tuning and shift sets) and of
// each evaluated category, split by fortune.
void make_data(const std::string& out, bool fresh) {
  io::make_dirs(out + "/data/fortunes");
  std::vector<std::string> general, evaluated{kFinetuneSet};
  evaluated.insert(evaluated.end(), std::begin(kShiftSets), std::end(kShiftSets));
  for (const auto& c : fortune_categories())
    if (std::find(evaluated.begin(), evaluated.end(), c) == evaluated.end()) general.push_back(c);
  std::vector<std::pair<std::string, std::vector<std::string>>> sets{{"general", general}};
  for (const auto& c : evaluated) sets.push_back({c, {c}});
  for (const auto& [name, categories] : sets) {
    if (!fresh && fs::exists(data_path(out, name, "train")) && fs::exists(data_path(out, name, "val"))) continue;
    const FortuneTokens tokens = fortune_tokens(categories, kValFraction, kSplitSeed);
    data::write_token_shard(data_path(out, name, "train"), tokens.train);
    data::write_token_shard(data_path(out, name, "val"), tokens.val);
  }
}

// The perplexity of VAL under byte frequencies counted in TRAIN (add-one): what a model that
// learned nothing but unigram statistics scores.
double unigram_perplexity(const std::string& train, const std::string& val, int64_t vocab_size) {
  const data::TokenShards counted({train}, vocab_size), scored({val}, vocab_size);
  std::vector<double> counts(static_cast<size_t>(vocab_size), 1.0);
  for (int64_t i = 0; i < counted.size(); ++i) counts[static_cast<size_t>(counted.token(i))] += 1;
  const double total = static_cast<double>(counted.size() + vocab_size);
  double nll = 0;
  for (int64_t i = 0; i < scored.size(); ++i) nll -= std::log(counts[static_cast<size_t>(scored.token(i))] / total);
  return std::exp(nll / static_cast<double>(std::max<int64_t>(1, scored.size())));
}

}  // namespace

namespace {

DemoSection run_language_demo(const DemoOptions& opt) {
  const std::string out = opt.out;
  const int K = opt.workers;
  std::printf("lofi demo, language: data, pretraining, then fine-tuning with %d workers both ways, in %s\n", K,
              out.c_str());
  make_data(out, opt.fresh);

  // 1. Pretrain on the general corpus (once; cached).
  const std::string pretrained = out + "/pretrained.safetensors";
  // The cache holds only what these options would train: the general corpus, this many steps.
  bool cached = false;
  if (!opt.fresh && fs::exists(pretrained)) {
    const train::Config was = train::config_from_checkpoint(pretrained);
    cached = was.data.train == data_path(out, "general", "train") && was.train.steps == opt.pretrain_steps;
  }
  if (!cached) {
    train::Config c = base_config(out + "/pretrain");
    c.data.train = data_path(out, "general", "train");
    c.train.steps = opt.pretrain_steps;
    c.train.lr = 1e-3;
    c.train.min_lr = 1e-4;
    c.train.warmup_steps = std::min<int64_t>(20, opt.pretrain_steps / 5);
    std::printf("pretraining %lld steps on the general corpus (cached in %s)\n",
                static_cast<long long>(c.train.steps), pretrained.c_str());
    launch_training(c, out, "pretrain", 1);
    fs::copy_file(run::RunDir(c.run.dir).node(0).final_weights(), pretrained,
                  fs::copy_options::overwrite_existing);
  }

  // 2. Fine-tune on one category: the baseline, then lo-fi, with one data budget.
  train::Config ft = base_config(out);
  ft.model.init = pretrained;
  ft.data.train = data_path(out, kFinetuneSet, "train");
  ft.data.val = data_path(out, kFinetuneSet, "val");  // for each lo-fi job's averaging check
  ft.train.steps = opt.finetune_steps;
  ft.train.lr = 5e-4;
  ft.train.min_lr = 5e-5;
  ft.train.warmup_steps = std::min<int64_t>(10, opt.finetune_steps / 5);
  ft.train.batch_size = 8 * K;

  const Comparison runs = run_baseline_and_lofi(ft, out, K, "");
  const std::vector<SyncedArm> arms = opt.sync_every > 0 ? run_synced_arms(ft, out, K, "", opt.sync_every) : std::vector<SyncedArm>{};

  // 3. Evaluate every model in-distribution and on each shift, beside the output-space ensemble.
  std::vector<family::NamedPath> sets{{kFinetuneSet, data_path(out, kFinetuneSet, "val")}};
  for (const char* s : kShiftSets) sets.push_back({s, data_path(out, s, "val")});
  family::EvalSettings settings;
  settings.batch = 32;
  settings.max_windows = opt.eval_windows;
  family::LmEvaluator evaluator(ft, sets, settings);

  struct Model {
    std::string name;
    std::vector<std::string> paths;  // one checkpoint, or an ensemble's members
    double seconds = -1;
    const Traffic* traffic = nullptr;
  };
  const std::vector<std::string>& node_finals = runs.node_finals;
  const std::string &baseline_final = runs.baseline_final, &lofi_average = runs.lofi_average;
  std::vector<Model> models{{"pretrained", {pretrained}}};
  models.push_back({"baseline (data-parallel)", {baseline_final}, runs.baseline_seconds, &runs.baseline_traffic});
  for (int k = 0; k < K; ++k) models.push_back({"lo-fi node " + std::to_string(k), {node_finals[static_cast<size_t>(k)]}});
  models.push_back({"lo-fi average", {lofi_average}, runs.lofi_seconds, &runs.lofi_traffic});
  models.push_back({"lo-fi ensemble (not a single model)", node_finals});
  for (const auto& arm : arms)
    models.push_back({arm.method + " (averaged every " + std::to_string(arm.sync_every) + " steps)", {arm.model}, arm.seconds,
                      &arm.traffic});

  std::vector<std::string> columns{"model", "ppl " + std::string(kFinetuneSet) + " (in-dist)"};
  for (const char* s : kShiftSets) columns.push_back(std::string("ppl ") + s);
  columns.insert(columns.end(), {"avg shift ppl", "bytes sent", "bytes between nodes", "wall time"});
  eval::ResultsTable table(columns);
  torch::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  for (const auto& m : models) {
    auto scores = m.paths.size() == 1 ? evaluator.score_file(m.paths[0]) : evaluator.score_ensemble(m.paths);
    std::vector<std::string> cells{m.name};
    nlohmann::json record{{"model", m.name}};
    double shift_loss = 0;
    for (size_t i = 0; i < sets.size(); ++i) {
      cells.push_back(eval::format_fixed(scores[i].perplexity, 3));
      record["perplexity"][sets[i].name] = scores[i].perplexity;
      if (i > 0) shift_loss += scores[i].loss;
    }
    // Averaged in log space (the geometric mean of perplexities), so one set cannot dominate.
    double avg_shift = std::exp(shift_loss / static_cast<double>(sets.size() - 1));
    cells.push_back(eval::format_fixed(avg_shift, 3));
    record["avg_shift_perplexity"] = avg_shift;
    cells.push_back(m.traffic ? eval::format_bytes(m.traffic->total) : "");
    cells.push_back(m.traffic ? eval::format_bytes(m.traffic->between_nodes) : "");
    cells.push_back(m.seconds >= 0 ? eval::format_fixed(m.seconds, 1) + " s" : "");
    if (m.seconds >= 0) record["wall_seconds"] = m.seconds;
    if (m.traffic) record["bytes_sent"] = m.traffic->total, record["bytes_between_nodes"] = m.traffic->between_nodes;
    table.add_row(cells, record);
  }

  // 4. Is averaging safe here? Loss along the lines the average relies on.
  family::EvalSettings line_settings = settings;
  line_settings.max_windows = std::max<int64_t>(8, opt.eval_windows / 4);
  family::LmEvaluator line_evaluator(ft, {sets[0], sets[1]}, line_settings);
  auto line = [&](const std::string& from, const std::string& to, const std::string& name) {
    io::NamedTensors a = io::SafetensorsFile(from).load_all(), b = io::SafetensorsFile(to).load_all();
    auto points = merge::evaluate_line(a, b, 11, [&](const io::NamedTensors& w) { return line_evaluator.losses(w); });
    nlohmann::json result = merge::line_json(from, to, points);
    io::write_file_atomic(out + "/interpolation-" + name + ".json", result.dump(2) + "\n");
    return result["barrier"];
  };
  nlohmann::json barriers{{"node0-node1", line(node_finals[0], node_finals[std::min<size_t>(1, node_finals.size() - 1)], "nodes")},
                          {"pretrained-average", line(pretrained, lofi_average, "pretrained-to-average")},
                          {"baseline-average", line(baseline_final, lofi_average, "baseline-to-average")}};

  // How strong the start is: the pretrained model on held-out text of its own corpus, beside what
  // byte frequencies alone give (a unigram model with add-one counts from the training text).
  const double source_ppl = family::LmEvaluator(ft, {{"general", data_path(out, "general", "val")}}, settings)
                                .score_file(pretrained)[0]
                                .perplexity;
  const double unigram_ppl =
      unigram_perplexity(data_path(out, "general", "train"), data_path(out, "general", "val"), ft.model.vocab_size);
  const nlohmann::json pretrained_source{{"metric", "perplexity"}, {"set", "general (held-out)"}, {"value", source_ppl},
                                         {"unigram_perplexity", unigram_ppl}};

  // 5. What the paper claims, checked against these numbers.
  const nlohmann::json rows = table.json();
  HalfScores scores;
  scores.half = "language", scores.metric = "perplexity", scores.shift_metric = "avg shift perplexity", scores.higher_is_better = false;
  auto ppl = [&](size_t row) { return rows[row]["perplexity"][kFinetuneSet].get<double>(); };
  const size_t baseline_row = 1, average_row = static_cast<size_t>(K) + 2;
  scores.baseline_in = ppl(baseline_row), scores.lofi_in = ppl(average_row);
  scores.baseline_shift = rows[baseline_row]["avg_shift_perplexity"], scores.lofi_shift = rows[average_row]["avg_shift_perplexity"];
  for (int k = 0; k < K; ++k) scores.nodes_in.push_back(ppl(static_cast<size_t>(k) + 2));
  scores.baseline_bytes_sent = runs.baseline_traffic.total, scores.lofi_bytes_between_nodes = runs.lofi_traffic.between_nodes;

  // 6. The spectrum: what each way of training scored and what it sent between machines.
  std::vector<SpectrumRow> spectrum{{"baseline (data-parallel)", "every step", ppl(baseline_row),
                                     rows[baseline_row]["avg_shift_perplexity"], runs.baseline_traffic.total / K,
                                     runs.baseline_seconds}};
  for (size_t a = 0; a < arms.size(); ++a) {
    const size_t row = static_cast<size_t>(K) + 4 + a;
    spectrum.push_back({arms[a].method, "every " + std::to_string(arms[a].sync_every) + " steps", ppl(row),
                        rows[row]["avg_shift_perplexity"], arms[a].traffic.between_nodes / K, arms[a].seconds});
  }
  spectrum.push_back({"lo-fi (average)", "never", ppl(average_row), rows[average_row]["avg_shift_perplexity"],
                      runs.lofi_traffic.between_nodes / K, runs.lofi_seconds});
  const eval::ResultsTable spectrum_table =
      demo::spectrum_table(spectrum, "ppl " + std::string(kFinetuneSet) + " (in-dist)", "avg shift ppl", 3);

  DemoSection section;
  section.title = "Language: fine-tuning a " + std::to_string(ft.model.n_layer) + "-layer byte-level decoder on the " +
                  kFinetuneSet + " fortunes, " + std::to_string(K) + " workers";
  const std::string note =
      "Real text: Debian's fortunes package. The decoder is pretrained on every category but four, fine-tuned on "
      "computers, and measured on held-out computers fortunes and under three shifts to other categories (linux, "
      "science, songs-poems). Perplexity per byte (lower is better); the baseline all-reduces gradients every "
      "step, lo-fi nodes never communicate and are averaged once. The shift average is the geometric mean of the "
      "shifted perplexities. The ensemble averages the nodes' probabilities (" + std::to_string(K) +
      "x the inference cost) and is shown for reference.";
  const std::string spectrum_note = kSpectrumNote;
  section.markdown = "## " + section.title + "\n\n" + note + "\n\n" + table.markdown() + "\n" + spectrum_note + "\n\n" +
                     spectrum_table.markdown();
  section.json = {{"title", section.title}, {"note", note}, {"workers", K}, {"finetune_steps", ft.train.steps},
                  {"global_batch", ft.train.batch_size}, {"seq_len", ft.data.seq_len}, {"in_distribution", kFinetuneSet},
                  {"shifts", {kShiftSets[0], kShiftSets[1], kShiftSets[2]}}, {"rows", rows},
                  {"table", table.display()}, {"barrier_heights", barriers}, {"claims", make_claims(scores)},
                  {"spectrum", spectrum_table.json()}, {"spectrum_table", spectrum_table.display()},
                  {"spectrum_note", spectrum_note}, {"pretrained_source", pretrained_source}};
  char line_text[256];
  std::snprintf(line_text, sizeof(line_text),
                "barrier heights (nats, in-distribution): between two lo-fi nodes %.4f, pretrained to lo-fi average %.4f\n",
                barriers["node0-node1"]["loss/" + std::string(kFinetuneSet)].get<double>(),
                barriers["pretrained-average"]["loss/" + std::string(kFinetuneSet)].get<double>());
  char source_text[200];
  std::snprintf(source_text, sizeof(source_text),
                "the pretrained model on held-out text of its own corpus: perplexity %.3f (byte frequencies alone: %.3f)\n",
                source_ppl, unigram_ppl);
  section.markdown += std::string("\n") + source_text;
  section.table = "language (perplexity, lower is better)\n" + table.text() + line_text + source_text +
                  "\nlanguage: the communication spectrum (wall time projected across machines)\n" + spectrum_table.text();
  return section;
}

}  // namespace

int run_demo(const DemoOptions& opt) {
  if (!opt.only.empty() && opt.only != "language" && opt.only != "vision")
    fail("demo: --only must be \"language\" or \"vision\", found \"", opt.only, "\"");
  io::make_dirs(opt.out);
  std::vector<DemoSection> sections;
  nlohmann::json results = nlohmann::json::object();
  if (opt.only != "vision") {
    sections.push_back(run_language_demo(opt));
    results = sections.back().json;  // the language rows stay at the top level, where reports look
  }
  if (opt.only != "language") {
    VisionDemoOptions vision{opt.out + "/vision", opt.workers, opt.vision_pretrain_steps, opt.vision_steps, opt.fresh,
                             opt.sync_every};
    sections.push_back(run_vision_demo(vision));
    results["vision"] = sections.back().json;
  }
  // Where the runs computed (train.device = "auto"): the baseline's node of every worker, lo-fi's
  // single-worker nodes.
  const std::string device = cat("baseline: ", dist::describe_placement("auto", opt.workers, opt.workers),
                                 "; lo-fi: ", dist::describe_placement("auto", opt.workers, 1));
  results["device"] = device;
  std::string md = "# lofi demo: baseline (data-parallel) against lo-fi (no communication, averaged once)\n\nRan on " +
                   device + ".\n";
  for (const auto& s : sections) md += "\n" + s.markdown;
  // Every half's claims, in one list at the top, worded at the end of the table and the report.
  nlohmann::json claims = nlohmann::json::array();
  for (const auto& s : sections)
    for (const auto& c : s.json["claims"]) claims.push_back(c);
  results["claims"] = claims;
  std::string verdicts = "\nverdicts:\n";
  for (const auto& c : claims) verdicts += "  " + eval::verdict_sentence(c) + "\n";
  md += "\n## Verdicts\n\n";
  for (const auto& c : claims) md += "- " + eval::verdict_sentence(c) + "\n";
  io::write_file_atomic(opt.out + "/results.md", md);
  io::write_file_atomic(opt.out + "/results.json", results.dump(2) + "\n");
  std::printf("\n");
  for (const auto& s : sections) std::printf("%s\n", s.table.c_str());
  std::printf("%s", verdicts.c_str());
  std::printf("ran on %s\n", device.c_str());
  const std::string report = eval::write_run_report(opt.out);  // both halves on one page
  std::printf("written: %s/results.md, %s/results.json, %s\n", opt.out.c_str(), opt.out.c_str(), report.c_str());
  return 0;
}

}  // namespace lofi::demo
