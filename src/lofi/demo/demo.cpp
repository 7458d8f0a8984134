#include "lofi/demo/demo.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "lofi/data/token_shards.h"
#include "lofi/demo/claims.h"
#include "lofi/demo/fortune_corpus.h"
#include "lofi/demo/half.h"
#include "lofi/demo/runs.h"
#include "lofi/demo/vision_demo.h"
#include "lofi/dist/device.h"
#include "lofi/dist/launcher.h"
#include "lofi/error.h"
#include "lofi/eval/report.h"
#include "lofi/eval/table.h"
#include "lofi/eval/verdict.h"
#include "lofi/family/adapters.h"
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

// The language half: a byte-level decoder pretrained on most of the fortunes, fine-tuned on one
// category, measured on it and on three others.
class LanguageHalf : public DemoHalf {
 public:
  explicit LanguageHalf(const DemoOptions& opt) : opt_(opt), out_(opt.out) {}

  HalfMetric metric() const override {
    return {"language", "perplexity", "avg shift perplexity", false, "ppl " + std::string(kFinetuneSet) + " (in-dist)",
            "avg shift ppl", 3};
  }

  train::Config prepare() override {
    std::printf("lofi demo, language: data, pretraining, then fine-tuning with %d workers both ways, in %s\n", opt_.workers,
                out_.c_str());
    make_data(out_, opt_.fresh);
    pretrain();
    ft_ = base_config(out_);
    ft_.model.init = pretrained();
    ft_.data.train = data_path(out_, kFinetuneSet, "train");
    ft_.data.val = data_path(out_, kFinetuneSet, "val");  // for each lo-fi job's averaging check
    ft_.train.steps = opt_.finetune_steps;
    ft_.train.lr = 5e-4;
    ft_.train.min_lr = 5e-5;
    ft_.train.warmup_steps = std::min<int64_t>(10, opt_.finetune_steps / 5);
    ft_.train.batch_size = 8 * opt_.workers;
    sets_ = {{kFinetuneSet, data_path(out_, kFinetuneSet, "val")}};
    for (const char* s : kShiftSets) sets_.push_back({s, data_path(out_, s, "val")});
    settings_.batch = 32;
    settings_.max_windows = opt_.eval_windows;
    return ft_;
  }

  std::vector<DemoModel> leading_models() override { return {DemoModel("pretrained", {pretrained()})}; }

  // LoRA nodes: the same lo-fi job with rank-8 adapters on every linear layer (the base frozen),
  // merged exactly (concat, the job's own merge) and, for comparison, by averaging the factors
  // apart as federated LoRA does.
  std::vector<DemoModel> own_arms(const train::Config& ft) override {
    train::Config lora = ft;
    lora.run.dir = out_ + "/lofi-lora";
    lora.dist.nodes = opt_.workers;
    lora.lora.rank = kLoraRank;
    lora.lora.alpha = 2.0 * kLoraRank;
    lora.train.lr = 4 * ft.train.lr;  // adapters start at zero change and take larger steps, as LoRA recipes set them
    lora.train.min_lr = 4 * ft.train.min_lr;
    std::printf("lo-fi with LoRA: %d nodes, rank-%lld adapters on every linear layer, the base frozen\n", opt_.workers,
                static_cast<long long>(kLoraRank));
    const double seconds = launch_training(lora, out_, "lofi-lora", opt_.workers);
    const run::RunDir run(lora.run.dir);
    const std::string factors = lora.run.dir + "/merged-factors.safetensors";
    family::merge_adapter_files({lora.run.dir}, factors, {"factors", 0, false});
    const Traffic traffic = run::run_traffic(run);
    const std::string name = "lo-fi LoRA r=" + std::to_string(kLoraRank);
    return {DemoModel(name + ", exact merge (concat)", {run.merged()}, Arm::lora_exact).cost(seconds, traffic),
            DemoModel(name + ", factors averaged (naive)", {factors}, Arm::lora_factors).cost(seconds, traffic)};
  }

  std::vector<std::string> score_columns() const override {
    std::vector<std::string> columns{"ppl " + std::string(kFinetuneSet) + " (in-dist)"};
    for (const char* s : kShiftSets) columns.push_back(std::string("ppl ") + s);
    columns.push_back("avg shift ppl");
    return columns;
  }

  ModelScore score(const DemoModel& m) override {
    if (!evaluator_) {
      torch::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
      evaluator_ = std::make_unique<family::LmEvaluator>(ft_, sets_, settings_);
    }
    const auto scores = m.paths.size() == 1 ? evaluator_->score_file(m.paths[0]) : evaluator_->score_ensemble(m.paths);
    ModelScore out;
    double shift_loss = 0;
    for (size_t i = 0; i < sets_.size(); ++i) {
      out.cells.push_back(eval::format_fixed(scores[i].perplexity, 3));
      out.record["perplexity"][sets_[i].name] = scores[i].perplexity;
      if (i > 0) shift_loss += scores[i].loss;
    }
    // Averaged in log space (the geometric mean of perplexities), so one set cannot dominate.
    out.shift = std::exp(shift_loss / static_cast<double>(sets_.size() - 1));
    out.in_distribution = scores[0].perplexity;
    scored_[m.arm] = out.in_distribution;
    out.cells.push_back(eval::format_fixed(out.shift, 3));
    out.record["avg_shift_perplexity"] = out.shift;
    return out;
  }

  std::string title() const override {
    return "Language: fine-tuning a " + std::to_string(ft_.model.n_layer) + "-layer byte-level decoder on the " + kFinetuneSet +
           " fortunes, " + std::to_string(opt_.workers) + " workers";
  }
  std::string note() const override {
    return "Real text: Debian's fortunes package. The decoder is pretrained on every category but four, fine-tuned on "
           "computers, and measured on held-out computers fortunes and under three shifts to other categories (linux, "
           "science, songs-poems). Perplexity per byte (lower is better); the baseline all-reduces gradients every "
           "step, lo-fi nodes never communicate and are averaged once. The shift average is the geometric mean of the "
           "shifted perplexities. The ensemble averages the nodes' probabilities (" + std::to_string(opt_.workers) +
           "x the inference cost) and is shown for reference.";
  }
  std::string caption() const override { return "language (perplexity, lower is better)"; }

  // Is averaging safe here (the loss along the lines the average relies on), and how strong the start is.
  void add_findings(const std::vector<DemoModel>& models, DemoSection& section) override {
    std::vector<std::string> nodes;
    std::string baseline, average;
    for (const auto& m : models) {
      if (m.arm == Arm::lofi_node) nodes.push_back(m.paths[0]);
      if (m.arm == Arm::baseline) baseline = m.paths[0];
      if (m.arm == Arm::lofi_average) average = m.paths[0];
    }
    const nlohmann::json barriers{{"node0-node1", line(nodes[0], nodes[std::min<size_t>(1, nodes.size() - 1)], "nodes")},
                                  {"pretrained-average", line(pretrained(), average, "pretrained-to-average")},
                                  {"baseline-average", line(baseline, average, "baseline-to-average")}};
    // The pretrained model on held-out text of its own corpus, beside what byte frequencies alone
    // give (a unigram model with add-one counts from the training text).
    const double source_ppl =
        family::LmEvaluator(ft_, {{"general", data_path(out_, "general", "val")}}, settings_).score_file(pretrained())[0].perplexity;
    const double unigram_ppl =
        unigram_perplexity(data_path(out_, "general", "train"), data_path(out_, "general", "val"), ft_.model.vocab_size);
    const std::string in_dist = "loss/" + std::string(kFinetuneSet);
    const std::string barrier_text = "barrier heights (nats, in-distribution): between two lo-fi nodes " +
                                     eval::format_fixed(barriers["node0-node1"][in_dist].get<double>(), 4) +
                                     ", pretrained to lo-fi average " +
                                     eval::format_fixed(barriers["pretrained-average"][in_dist].get<double>(), 4) + "\n";
    const std::string source_text = "the pretrained model on held-out text of its own corpus: perplexity " +
                                    eval::format_fixed(source_ppl, 3) + " (byte frequencies alone: " +
                                    eval::format_fixed(unigram_ppl, 3) + ")\n";
    // LoRA nodes merged exactly against their factors averaged apart.
    std::string lora_text;
    if (scored_.count(Arm::lora_exact) && scored_.count(Arm::lora_factors)) {
      const double exact = scored_[Arm::lora_exact], naive = scored_[Arm::lora_factors];
      lora_text = "LoRA nodes (rank " + std::to_string(kLoraRank) + "): the exact merge scores perplexity " + eval::format_fixed(exact, 3) +
                  " in-distribution, averaging the factors apart " + eval::format_fixed(naive, 3) + " (" +
                  (naive > exact ? "worse by " + eval::format_fixed(naive - exact, 3) : "not worse here") + ")\n";
      section.results.more["lora"] = {{"rank", kLoraRank}, {"exact_perplexity", exact}, {"factors_perplexity", naive}};
    }
    section.table += barrier_text + source_text + lora_text;
    section.markdown += source_text + lora_text;
    section.results.more["seq_len"] = ft_.data.seq_len;
    section.results.more["in_distribution"] = kFinetuneSet;
    section.results.more["shifts"] = {kShiftSets[0], kShiftSets[1], kShiftSets[2]};
    section.results.more["barrier_heights"] = barriers;
    section.results.more["pretrained_source"] = {{"metric", "perplexity"}, {"set", "general (held-out)"}, {"value", source_ppl},
                                         {"unigram_perplexity", unigram_ppl}};
  }

 private:
  std::string pretrained() const { return out_ + "/pretrained.safetensors"; }

  // Pretraining on the general corpus, once: the cache holds only what these options would train
  // (the general corpus, this many steps).
  void pretrain() {
    if (!opt_.fresh && fs::exists(pretrained())) {
      const train::Config was = train::config_from_checkpoint(pretrained());
      if (was.data.train == data_path(out_, "general", "train") && was.train.steps == opt_.pretrain_steps) return;
    }
    train::Config c = base_config(out_ + "/pretrain");
    c.data.train = data_path(out_, "general", "train");
    c.train.steps = opt_.pretrain_steps;
    c.train.lr = 1e-3;
    c.train.min_lr = 1e-4;
    c.train.warmup_steps = std::min<int64_t>(20, opt_.pretrain_steps / 5);
    std::printf("pretraining %lld steps on the general corpus (cached in %s)\n", static_cast<long long>(c.train.steps),
                pretrained().c_str());
    launch_training(c, out_, "pretrain", 1);
    fs::copy_file(run::RunDir(c.run.dir).node(0).final_weights(), pretrained(), fs::copy_options::overwrite_existing);
  }

  // The held-out losses along the line FROM -> TO on the in-distribution set and the first shift,
  // written to OUT/interpolation-NAME.json; returns its barrier heights.
  nlohmann::json line(const std::string& from, const std::string& to, const std::string& name) {
    if (!line_evaluator_) {
      family::EvalSettings s = settings_;
      s.max_windows = std::max<int64_t>(8, opt_.eval_windows / 4);
      line_evaluator_ = std::make_unique<family::LmEvaluator>(ft_, std::vector<family::NamedPath>{sets_[0], sets_[1]}, s);
    }
    io::NamedTensors a = io::SafetensorsFile(from).load_all(), b = io::SafetensorsFile(to).load_all();
    auto points = merge::evaluate_line(a, b, 11, [&](const io::NamedTensors& w) { return line_evaluator_->losses(w); });
    nlohmann::json result = merge::line_json(from, to, points);
    io::write_file_atomic(out_ + "/interpolation-" + name + ".json", result.dump(2) + "\n");
    return result["barrier"];
  }

  const DemoOptions& opt_;
  const std::string out_;
  train::Config ft_;
  std::vector<family::NamedPath> sets_;
  family::EvalSettings settings_;
  std::unique_ptr<family::LmEvaluator> evaluator_, line_evaluator_;
  std::map<Arm, double> scored_;  // in-distribution perplexity of the arms the findings compare
  static constexpr int64_t kLoraRank = 8;
};

}  // namespace

int run_demo(const DemoOptions& opt) {
  if (!opt.only.empty() && opt.only != "language" && opt.only != "vision")
    fail("demo: --only must be \"language\" or \"vision\", found \"", opt.only, "\"");
  io::make_dirs(opt.out);
  std::vector<DemoSection> sections;
  eval::ResultsFile results;
  if (opt.only != "vision") {
    LanguageHalf language(opt);
    sections.push_back(run_half(language, {opt.out, "", opt.workers, opt.sync_every, opt.warm_start_steps}));
    results = sections.back().results;  // the language rows stay at the top level, where reports look
  }
  if (opt.only != "language") {
    VisionDemoOptions vision{opt.out + "/vision", opt.workers, opt.vision_pretrain_steps, opt.vision_steps, opt.fresh,
                             opt.sync_every, opt.warm_start_steps};
    sections.push_back(run_vision_demo(vision));
    results.more["vision"] = sections.back().results.to_json();
  }
  // Where the runs computed (train.device = "auto"): the baseline's node of every worker, lo-fi's
  // single-worker nodes.
  const std::string device = cat("baseline: ", dist::describe_placement("auto", opt.workers, opt.workers),
                                 "; lo-fi: ", dist::describe_placement("auto", opt.workers, 1));
  results.more["device"] = device;
  std::string md = "# lofi demo: baseline (data-parallel) against lo-fi (no communication, averaged once)\n\nRan on " +
                   device + ".\n";
  for (const auto& s : sections) md += "\n" + s.markdown;
  // Every half's claims, in one list at the top, worded at the end of the table and the report.
  nlohmann::json claims = nlohmann::json::array();
  for (const auto& s : sections)
    for (const auto& c : s.results.claims) claims.push_back(c);
  results.claims = claims;
  std::string verdicts = "\nverdicts:\n";
  for (const auto& c : claims) verdicts += "  " + eval::verdict_sentence(c) + "\n";
  md += "\n## Verdicts\n\n";
  for (const auto& c : claims) md += "- " + eval::verdict_sentence(c) + "\n";
  io::write_file_atomic(opt.out + "/results.md", md);
  io::write_file_atomic(opt.out + "/results.json", results.to_json().dump(2) + "\n");
  std::printf("\n");
  for (const auto& s : sections) std::printf("%s\n", s.table.c_str());
  std::printf("%s", verdicts.c_str());
  std::printf("ran on %s\n", device.c_str());
  const std::string report = eval::write_run_report(opt.out);  // both halves on one page
  std::printf("written: %s/results.md, %s/results.json, %s\n", opt.out.c_str(), opt.out.c_str(), report.c_str());
  return 0;
}

}  // namespace lofi::demo
