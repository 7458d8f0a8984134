// lofi: distributed fine-tuning without communication. Subcommands only: each parses its flags
// and calls the library; errors are printed on one line with a non-zero exit.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>

#include "lofi/data/prepare.h"
#include "lofi/data/token_shards.h"
#include "lofi/data/tokenizer.h"
#include "lofi/demo/demo.h"
#include "lofi/dist/device.h"
#include "lofi/dist/env.h"
#include "lofi/dist/launcher.h"
#include "lofi/error.h"
#include "lofi/io/temporaries.h"
#include "lofi/eval/generate.h"
#include "lofi/eval/perplexity.h"
#include "lofi/eval/report.h"
#include "lofi/eval/table.h"
#include "lofi/family/export.h"
#include "lofi/family/family.h"
#include "lofi/family/lm_evaluator.h"
#include "lofi/family/lm_model.h"
#include "lofi/family/scorer.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/merge/average.h"
#include "lofi/merge/interpolate.h"
#include "lofi/merge/soup.h"
#include "lofi/model/hf.h"
#include "lofi/train/config.h"
#include "lofi/train/job_end.h"
#include "lofi/train/trainer.h"

namespace {

using namespace lofi;

// lofi's version, the engine's, and whether CUDA and NCCL are compiled in and usable here.
std::string version_text() {
  const dist::BuildInfo b = dist::build_info();
  auto yes_no = [](bool v) { return v ? "yes" : "no"; };
  std::string out = cat("lofi ", LOFI_VERSION, "\nLibTorch ", b.libtorch, "\nCUDA: compiled in ", yes_no(b.cuda_compiled));
  if (b.cuda_compiled) out += cat(" (runtime ", b.cuda_version, ")");
  out += cat(", available ", yes_no(b.cuda_available()), " (", b.gpus, " GPU(s) visible)");
  out += cat("\nNCCL: compiled in ", yes_no(b.nccl_compiled), ", available ", yes_no(b.cuda_available()));
  if (!b.nccl_version.empty()) out += cat(" (", b.nccl_version, ")");
  return out;
}

int cmd_train(const std::string& config_path, const std::vector<std::string>& sets, const train::StartOptions& start,
              bool print_only, bool quiet) {
  train::Config config = train::load_config(config_path, sets);
  if (print_only) {
    std::cout << train::to_toml(config, /*help=*/true);
    return 0;
  }
  dist::WorkerEnv env = dist::worker_env_from_environment();
  if (env.rank == 0 && !quiet) std::cout << "# resolved config\n" << train::to_toml(config) << std::flush;
  train::TrainedWorker worker = train::run_training(config, env, family::make_task, start);
  train::finish_job(config, worker);  // the node's Hugging Face output, or a lo-fi job's merge
  const train::TrainSummary& s = worker.summary;
  if (env.rank == 0 && s.steps_run == 0)  // resumed at its last step: no loss of this start to report
    std::printf("done: node %lld, no steps left (its checkpoint is at step %lld of %lld)\n", static_cast<long long>(s.node),
                static_cast<long long>(s.steps), static_cast<long long>(s.steps));
  else if (env.rank == 0)
    std::printf("done: node %lld, %lld steps in %.1f s, final loss %.4f, bytes sent %lld (between nodes %lld)\n",
                static_cast<long long>(s.node), static_cast<long long>(s.steps), s.seconds, s.final_loss,
                static_cast<long long>(s.bytes_within_node + s.bytes_between_nodes),
                static_cast<long long>(s.bytes_between_nodes));
  return 0;
}

// The model shape for evaluating CHECKPOINT: --config if given, else the checkpoint's own.
train::Config eval_config(const std::string& checkpoint, const std::string& config_path, const std::vector<std::string>& sets) {
  train::Config config;
  if (model::is_hf_model_dir(checkpoint)) {  // a pretrained model as published: its config.json gives the shape
    config.model.init = checkpoint;
    train::apply_hf_init(config.model);
    config.data.seq_len = std::min(config.data.seq_len, config.model.max_seq_len);  // no run chose one: fit the model
  } else {
    config = config_path.empty() ? train::config_from_checkpoint(checkpoint) : train::load_config(config_path, {});
  }
  for (const auto& s : sets) train::apply_override(config, s);
  config.model.init = checkpoint;
  train::validate(config);
  return config;
}

struct EvalArgs {
  std::string model, config, json;
  std::vector<std::string> ensemble, data, sets, class_maps;
  family::EvalSettings settings;
  int64_t max_images = 0;
};

family::ScorerInputs scorer_inputs(const EvalArgs& a) {
  family::ScorerInputs in;
  in.data = family::parse_named_paths(a.data, "--data");
  in.class_maps = family::parse_named_paths(a.class_maps, "--class-map");
  in.lm = a.settings;
  in.images.batch = a.settings.batch;
  in.images.max_images = a.max_images;
  in.images.allow_nonfinite = a.settings.allow_nonfinite;
  return in;
}

// Rows for --model, or for each --ensemble member, then the members' output-space ensemble and
// their weight average; ADD(name, scores) writes one row, whichever kind of evaluator scores.
template <typename Evaluator, typename Add>
void add_model_rows(const EvalArgs& a, const train::Config& config, Evaluator& evaluator, const Add& add) {
  if (!a.model.empty()) add(a.model, evaluator.score_file(a.model));
  if (a.ensemble.empty()) return;
  std::vector<io::NamedTensors> members;
  for (const auto& path : a.ensemble) {
    add(path, evaluator.score_file(path));
    members.push_back(family::load_weights(config, path));  // a Hugging Face directory too
  }
  std::vector<const io::NamedTensors*> ptrs;
  for (const auto& m : members) ptrs.push_back(&m);
  add("ensemble of " + std::to_string(members.size()) + " (mean probabilities)", evaluator.score_ensemble(a.ensemble));
  add("weight average of " + std::to_string(members.size()),
      evaluator.score(merge::weighted_average(ptrs, std::vector<double>(ptrs.size(), 1.0))));
}

// Image classifiers: top-1, top-5 and loss per test folder, of a model or of an ensemble beside
// its weight average.
int cmd_eval_images(const EvalArgs& a, const train::Config& config, const std::string& reference) {
  family::ScorerInputs in = scorer_inputs(a);
  family::ImageEvaluator evaluator(config, family::checkpoint_classes(reference), family::image_test_sets(in), in.images);
  std::vector<std::string> columns{"model"};
  for (const auto& s : evaluator.sets()) columns.insert(columns.end(), {s.name + " top-1", s.name + " top-5", s.name + " loss"});
  eval::ResultsTable table(columns);
  auto add = [&](const std::string& name, const std::vector<eval::ClassificationScore>& scores) {
    std::vector<std::string> cells{name};
    nlohmann::json record{{"model", name}};
    for (size_t i = 0; i < scores.size(); ++i) {
      cells.push_back(eval::format_fixed(100 * scores[i].top1, 2));
      cells.push_back(eval::format_fixed(100 * scores[i].top5, 2));
      cells.push_back(eval::format_fixed(scores[i].loss, 4));
      const auto& set = evaluator.sets()[i];
      record["datasets"][set.name] = {{"path", set.folder}, {"images", scores[i].count}, {"top1", scores[i].top1},
                                      {"top5", scores[i].top5}, {"loss", scores[i].loss}};
    }
    table.add_row(cells, record);
  };
  add_model_rows(a, config, evaluator, add);
  std::cout << table.text();
  if (!a.json.empty()) io::write_file_atomic(a.json, nlohmann::json{{"results", table.json()}}.dump(2) + "\n");
  return 0;
}

int cmd_eval(const EvalArgs& a) {
  if (a.model.empty() && a.ensemble.empty()) fail("eval: give --model or --ensemble");
  const std::string& reference = a.model.empty() ? a.ensemble[0] : a.model;
  const train::Config config = eval_config(reference, a.config, a.sets);
  if (family::family_of(config.model.arch).kind() == family::Kind::image_classifier) return cmd_eval_images(a, config, reference);
  if (!a.class_maps.empty()) fail("eval: --class-map applies to image classifiers; ", reference, " is a language model");
  auto datasets = family::parse_named_paths(a.data, "--data");
  family::LmEvaluator evaluator(config, datasets, a.settings);

  std::vector<std::string> columns{"model"};
  for (const auto& d : datasets) columns.push_back(d.name + " loss"), columns.push_back(d.name + " ppl");
  eval::ResultsTable table(columns);
  auto add = [&](const std::string& name, const std::vector<eval::LmScore>& scores) {
    std::vector<std::string> cells{name};
    nlohmann::json record{{"model", name}};
    for (size_t i = 0; i < scores.size(); ++i) {
      cells.push_back(eval::format_fixed(scores[i].loss, 4));
      cells.push_back(eval::format_fixed(scores[i].perplexity, 3));
      record["datasets"][datasets[i].name] = {{"path", datasets[i].path}, {"tokens", scores[i].tokens},
                                               {"loss", scores[i].loss}, {"perplexity", scores[i].perplexity}};
    }
    table.add_row(cells, record);
  };
  add_model_rows(a, config, evaluator, add);
  std::cout << table.text();
  if (!a.json.empty()) io::write_file_atomic(a.json, nlohmann::json{{"results", table.json()}}.dump(2) + "\n");
  return 0;
}

int cmd_soup(const std::vector<std::string>& candidates, const EvalArgs& a, const std::string& out, bool allow_nonfinite) {
  const family::ScorerInputs in = scorer_inputs(a);
  if (in.data.size() != 1) fail("soup: give exactly one held-out --data NAME=PATH");
  const train::Config config = eval_config(candidates.at(0), a.config, a.sets);
  family::WeightsScorer scorer = family::make_weights_scorer(config, candidates.at(0), in);
  const std::string metric = "loss/" + in.data[0].name;
  merge::SoupResult soup = merge::greedy_soup(
      candidates, [&](const io::NamedTensors& w) { return scorer(w).at(metric); }, allow_nonfinite,
      [&](const std::string& path) { return family::load_weights(config, path); });
  eval::ResultsTable table({"candidate", "held-out loss alone", "soup loss with it", "kept"});
  for (const auto& s : soup.steps)
    table.add_row({s.candidate, eval::format_fixed(s.alone, 4), eval::format_fixed(s.with, 4), s.kept ? "yes" : "no"},
                  {{"candidate", s.candidate}, {"alone", s.alone}, {"with", s.with}, {"kept", s.kept}});
  std::cout << table.text() << "greedy soup of " << soup.chosen.size() << " of " << candidates.size()
            << ": held-out loss " << eval::format_fixed(soup.score, 4) << "\n";
  io::Metadata meta{{"lofi.merge", "greedy-soup"}};
  if (model::is_hf_model_dir(candidates[0])) {
    meta["lofi.config"] = train::to_toml(config);  // the shape its config.json gave, for eval and export
  } else if (auto cfg = io::SafetensorsFile(candidates[0]).metadata(); cfg.count("lofi.config")) {
    meta["lofi.config"] = cfg["lofi.config"];
  }
  meta["lofi.soup.chosen"] = nlohmann::json(soup.chosen).dump();
  if (!out.empty()) io::save_safetensors(out, soup.weights, meta), std::cout << "written: " << out << "\n";
  if (!a.json.empty()) io::write_file_atomic(a.json, nlohmann::json{{"steps", table.json()}, {"chosen", soup.chosen}, {"loss", soup.score}}.dump(2) + "\n");
  return 0;
}

// Text from a language model: a lofi checkpoint or a Hugging Face directory, with the tokenizer of
// --tokenizer, the model directory, or the directory its run started from.
int cmd_generate(const std::string& model_path, const std::string& prompt, std::string tokenizer_dir,
                 const eval::GenerateOptions& options, const std::vector<std::string>& sets, bool allow_nonfinite) {
  train::Config config;
  if (model::is_hf_model_dir(model_path)) {
    config.model.init = model_path;
    train::apply_hf_init(config.model);
    if (tokenizer_dir.empty()) tokenizer_dir = model_path;
  } else {
    config = train::config_from_checkpoint(model_path);
    if (const std::string source = train::pretrained_source(model_path); tokenizer_dir.empty() && model::is_hf_model_dir(source))
      tokenizer_dir = source;
  }
  for (const auto& s : sets) train::apply_override(config, s);
  if (family::family_of(config.model.arch).kind() != family::Kind::language_model)
    fail("generate: ", model_path, " is an image classifier; generate needs a language model");
  if (tokenizer_dir.empty())
    fail("generate: no tokenizer for ", model_path, ": give --tokenizer DIR (a Hugging Face tokenizer directory), or ",
         "--tokenizer bytes for a byte-level model such as the demo's");
  const bool bytes = tokenizer_dir == "bytes";
  std::optional<data::Tokenizer> tokenizer;
  if (!bytes) tokenizer.emplace(data::Tokenizer::load(tokenizer_dir));
  std::vector<int64_t> ids;
  if (bytes) {
    for (unsigned char c : prompt) ids.push_back(c);
  } else {
    for (uint32_t id : tokenizer->encode(prompt)) ids.push_back(id);
  }
  eval::GenerateOptions o = options;
  if (!bytes) o.stop_id = tokenizer->end_of_text();
  model::CausalLm lm = family::make_lm(config.model, 0);
  family::EvalSettings finite;
  finite.allow_nonfinite = allow_nonfinite;
  family::refuse_nonfinite_model(*lm, model_path, finite);  // else NaN logits decode as token 0, NUL bytes
  lm->to(dist::resolve_device(config.train.device, 0, "train.device"));
  const std::vector<int64_t> out = eval::generate(*lm, ids, o);
  std::string text;
  if (bytes) {
    for (int64_t id : out) text += static_cast<char>(id);
  } else {
    text = tokenizer->decode(std::vector<uint32_t>(out.begin(), out.end()), /*skip_special_tokens=*/true);
  }
  std::cout << text << "\n";
  return 0;
}

int cmd_interpolate(const std::string& from, const std::string& to, int points, const EvalArgs& a) {
  const family::ScorerInputs in = scorer_inputs(a);
  const auto& datasets = in.data;
  const train::Config config = eval_config(from, a.config, a.sets);
  family::WeightsScorer scorer = family::make_weights_scorer(config, from, in);
  io::NamedTensors wa = family::load_weights(config, from), wb = family::load_weights(config, to);
  auto line = merge::evaluate_line(wa, wb, points, scorer);
  std::vector<std::string> columns{"alpha"};
  for (const auto& d : datasets) columns.push_back(d.name + " loss");
  eval::ResultsTable table(columns);
  for (const auto& p : line) {
    std::vector<std::string> cells{eval::format_fixed(p.alpha, 2)};
    for (const auto& d : datasets) cells.push_back(eval::format_fixed(p.metrics.at("loss/" + d.name), 4));
    table.add_row(cells, {{"alpha", p.alpha}, {"metrics", p.metrics}});
  }
  std::cout << "from " << from << " (alpha 0) to " << to << " (alpha 1)\n" << table.text();
  nlohmann::json result = merge::line_json(from, to, line);
  for (const auto& d : datasets) {
    double h = result["barrier"]["loss/" + d.name];
    std::cout << "barrier height on " << d.name << ": " << eval::format_fixed(h, 4) << " nats"
              << (h > 0.01 ? "  (averaging these two is not safe here)" : "") << "\n";
  }
  if (!a.json.empty()) io::write_file_atomic(a.json, result.dump(2) + "\n");
  return 0;
}

int cmd_prepare(const data::PrepareOptions& options) {
  data::PrepareSummary s = data::prepare_tokens(options);
  for (const auto* split : {&s.train, &s.val}) {
    if (split->files.empty()) continue;
    std::printf("%s: %lld documents, %lld tokens (uint%d) -> %s%s\n", split == &s.train ? "train" : "val",
                static_cast<long long>(split->documents), static_cast<long long>(split->tokens), s.token_bytes * 8,
                split->files.front().c_str(), split->files.size() > 1 ? (" ... (" + std::to_string(split->files.size()) + " files)").c_str() : "");
  }
  if (options.val_fraction > 0 && s.val.files.empty()) std::fprintf(stderr, "lofi: warning: no document fell in the validation split\n");
  return 0;
}

int cmd_inspect(const std::string& path) {
  io::SafetensorsFile file(path);
  std::cout << path << "\n";
  for (const auto& [k, v] : file.metadata()) {
    std::string first = v.substr(0, v.find('\n'));
    std::cout << "  metadata " << k << " = " << first << (first.size() < v.size() ? " ..." : "") << "\n";
  }
  eval::ResultsTable table({"tensor", "dtype", "shape", "elements"});
  int64_t total = 0;
  for (const auto& e : file.entries()) {
    int64_t n = 1;
    std::string shape = "[";
    for (size_t i = 0; i < e.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(e.shape[i]), n *= e.shape[i];
    table.add_row({e.name, e.dtype, shape + "]", std::to_string(n)}, nullptr);
    total += n;
  }
  std::cout << table.text() << file.entries().size() << " tensors, " << total << " elements, " << file.data_bytes()
            << " bytes of data\n";
  return 0;
}

}  // namespace

// Numbers on the command line, each refused in one line naming what was expected: a finite
// number within fp32's range (what weights and merge factors become), optionally at least MIN.
// CLI11's own number checks let "inf", "nan" and 1e39 through, and print DBL_MAX's 309 digits as
// the upper end of their range.
CLI::Validator number_check(std::optional<double> min = std::nullopt) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0') return "expected a number, found \"" + text + "\"";
        if (!std::isfinite(v) || std::abs(v) > std::numeric_limits<float>::max())
          return "expected a finite number within fp32's range (|x| <= 3.4e38), found " + text;
        if (min && v < *min) return "expected a number >= " + eval::format_fixed(*min, *min == std::floor(*min) ? 0 : 3) + ", found " + text;
        return "";
      },
      min ? "NUMBER>=" + std::to_string(static_cast<int64_t>(*min)) : "NUMBER");
}
const CLI::Validator kFinite = number_check(), kNonNegative = number_check(0.0), kPositive = number_check(1.0);

int main(int argc, char** argv) {
  // Ctrl-C, SIGTERM or SIGHUP mid-write leave no OUT.tmp-PID behind (lofi launch forwards them to
  // its workers with its own handlers while it runs).
  io::remove_temporaries_on_signals();
  CLI::App app{"lofi: fine-tune across nodes without communicating gradients, then average the weights"};
  app.set_version_flag("--version", [] { return version_text(); });
  app.option_defaults()->always_capture_default();  // --help shows each option's default
  app.require_subcommand(1);

  auto* train = app.add_subcommand("train", "Train or fine-tune (one worker; run it under `lofi launch`, torchrun or srun)");
  std::string config_path;
  std::vector<std::string> sets;
  bool resume = false, resume_changed = false, overwrite = false, print_config = false, quiet = false;
  train->add_option("--config,-c", config_path, "TOML config file")->check(CLI::ExistingFile);
  train->add_option("--set", sets, "override a config key: section.key=value (repeatable)");
  auto* resume_flag = train->add_flag("--resume", resume, "continue from the newest checkpoint that verifies in each node's ckpt/");
  auto* changed_flag = train->add_flag("--resume-changed", resume_changed,
                                       "resume although settings that change the trajectory differ from the checkpoint's");
  train->add_flag("--overwrite", overwrite, "start over in a run directory that holds a run (deletes its checkpoints and finals)")
      ->excludes(resume_flag)
      ->excludes(changed_flag);
  train->add_flag("--print-config", print_config, "print the resolved config and exit");
  train->add_flag("--quiet", quiet, "do not echo the resolved config (it is still written to the run directory)");

  auto* launch = app.add_subcommand("launch", "Run K local workers with torchrun's environment: lofi launch --workers K -- train ...");
  dist::LaunchOptions launch_opt;
  std::vector<std::string> launch_args;
  launch->add_option("--workers,-k", launch_opt.workers, "number of worker processes")->check(kPositive);
  launch->add_option("--threads", launch_opt.threads, "intra-op threads per worker (default: cores / workers)");
  launch->add_option("--master-port", launch_opt.master_port, "rendezvous port on 127.0.0.1 (default: a free one)")
      ->check(CLI::Range(0, 65535));
  launch->add_option("command", launch_args, "lofi subcommand and its arguments, after --")->required();

  // Flags shared by average and merge: inputs, output and the engine's checks.
  auto add_merge_flags = [](CLI::App* cmd, merge::MergeOptions& opt, const std::string& verb) {
    cmd->add_option("inputs", opt.inputs, "safetensors checkpoints, sharded sets (index.json or a Hugging Face directory), or run directories (their node-*/final.safetensors)")
        ->required();
    cmd->add_option("--out,-o", opt.out, "output .safetensors (a new directory with --shard-size, or when the inputs are Hugging Face model directories)")->required();
    cmd->add_option("--dtype", opt.dtype, "output dtype: F32, F16, BF16 or F64 (default: as the inputs)");
    cmd->add_option("--shard-size", opt.shard_bytes, "write Hugging Face shards of at most this many bytes");
    cmd->add_option("--min-inputs", opt.min_inputs, "merge whichever inputs exist and verify, naming the others; fail under this many");
    cmd->add_option("--threads", opt.threads, "threads (default: all cores)");
    cmd->add_flag("--no-checksums{false}", opt.checksums, "skip the inputs' XXH3 checksums in the provenance (saves a read)");
    cmd->add_flag("--allow-nonfinite", opt.allow_nonfinite, verb + " inputs holding NaN or Inf (refused by default)");
    cmd->add_flag("--force", opt.force, verb + " inputs trained apart (another pretrained start, step count, node count or settings)");
  };
  auto* average = app.add_subcommand("average", "Average checkpoints or run directories: lofi average A B ... --out OUT (lofi merge --method average)");
  merge::AverageOptions avg;
  add_merge_flags(average, avg, "average");
  average->add_option("--weights", avg.weights, "weights w1,w2,... (normalised)")->delimiter(',')->allow_extra_args(false)->check(kFinite);

  std::string method_help = "merge method:";
  for (const auto& name : merge::method_names()) method_help += "\n  " + name + ": " + merge::find_method(name).summary();
  auto* merge_cmd = app.add_subcommand("merge", "Merge checkpoints with a method mergekit users know: lofi merge --method ties A B ... --base PRETRAINED --out OUT");
  merge::MergeOptions mrg;
  add_merge_flags(merge_cmd, mrg, "merge");
  merge_cmd->add_option("--method", mrg.method, method_help)->capture_default_str();
  merge_cmd->add_option("--base", mrg.base, "the model the inputs were fine-tuned from (task-arithmetic, ties, dare)");
  merge_cmd->add_option("--weights", mrg.weights, "weights w1,w2,... (average: normalised; others: as given, may be negative)")->delimiter(',')->allow_extra_args(false)->check(kFinite);
  merge_cmd->add_option("--lambda", mrg.params.lambda, "task-arithmetic, ties, dare: scale of the merged difference")->capture_default_str()->check(kFinite);
  merge_cmd->add_option("--density", mrg.params.density, "ties, dare: fraction of each difference kept, in (0, 1]")->capture_default_str()->check(kFinite);
  merge_cmd->add_option("--t", mrg.params.t, "slerp: 0 gives the first input, 1 the second")->capture_default_str()->check(kFinite);
  merge_cmd->add_option("--seed", mrg.params.seed, "dare: seed of the drop masks")->capture_default_str();

  // Evaluation flags shared by eval, soup and interpolate.
  EvalArgs ev;
  auto add_eval_flags = [&](CLI::App* cmd) {
    cmd->add_option("--data,-d", ev.data, "NAME=PATH of token shards, or of an image folder for a classifier (repeatable)")
        ->required();
    cmd->add_option("--class-map", ev.class_maps,
                    "NAME=FILE: score image set NAME through a class map (subset or many-to-one; repeatable)");
    cmd->add_option("--max-images", ev.max_images, "classifiers: score this many images per set, an even share of every class (0: all)");
    cmd->add_option("--config,-c", ev.config, "config giving the model's shape (default: the checkpoint's own)");
    cmd->add_option("--set", ev.sets, "override a config key: section.key=value");
    cmd->add_option("--seq-len", ev.settings.seq_len, "window length (default: data.seq_len)");
    cmd->add_option("--batch", ev.settings.batch, "windows per forward pass")->check(kPositive);
    cmd->add_option("--max-windows", ev.settings.max_windows, "score at most this many windows per dataset (0: all)");
    cmd->add_option("--json", ev.json, "also write the results as JSON here");
  };
  auto* eval_cmd = app.add_subcommand("eval", "Loss and perplexity (language models) or top-1/top-5 (classifiers) on named datasets, of a model or an ensemble beside its average");
  eval_cmd->add_option("--model,-m", ev.model, "safetensors checkpoint, or a Hugging Face model directory (the pretrained model)")
      ->check(CLI::ExistingPath);
  eval_cmd->add_option("--ensemble", ev.ensemble,
                       "checkpoints or Hugging Face model directories to ensemble (mean of probabilities), shown beside their weight average")
      ->check(CLI::ExistingPath);
  add_eval_flags(eval_cmd);
  eval_cmd->add_flag("--allow-nonfinite", ev.settings.allow_nonfinite, "score weights holding NaN or Inf (refused by default)");

  auto* soup = app.add_subcommand("soup", "Greedy soup: add candidates by held-out score while the average improves");
  std::vector<std::string> soup_candidates;
  std::string soup_out;
  soup->add_option("candidates", soup_candidates, "checkpoints, or Hugging Face model directories")->required()->check(CLI::ExistingPath);
  soup->add_option("--out,-o", soup_out, "write the soup here");
  bool soup_allow_nonfinite = false;
  soup->add_flag("--allow-nonfinite", soup_allow_nonfinite, "consider candidates holding NaN or Inf (refused by default)");
  add_eval_flags(soup);

  auto* interpolate = app.add_subcommand("interpolate", "Loss along the line between two checkpoints, and the barrier height");
  std::string interp_a, interp_b;
  int interp_points = 11;
  interpolate->add_option("from", interp_a, "checkpoint (or Hugging Face model directory) at alpha = 0")->required()->check(CLI::ExistingPath);
  interpolate->add_option("to", interp_b, "checkpoint (or Hugging Face model directory) at alpha = 1")->required()->check(CLI::ExistingPath);
  interpolate->add_option("--points", interp_points, "evenly spaced points including both ends")->check(CLI::Range(2, 1001));
  add_eval_flags(interpolate);

  auto* report = app.add_subcommand("report", "Write a self-contained HTML report of a run directory (or a directory of runs)");
  std::string report_dir, report_out;
  report->add_option("dir", report_dir, "run directory, e.g. runs/demo")->required()->check(CLI::ExistingDirectory);
  report->add_option("--out,-o", report_out, "output HTML (default: DIR/report.html)");

  auto* generate = app.add_subcommand("generate", "Text from a language model: lofi generate --model M --prompt TEXT");
  std::string gen_model, gen_prompt, gen_tokenizer;
  std::vector<std::string> gen_sets;
  eval::GenerateOptions gen;
  generate->add_option("--model,-m", gen_model, "lofi checkpoint or Hugging Face model directory")->required()->check(CLI::ExistingPath);
  generate->add_option("--prompt,-p", gen_prompt, "text to continue")->required();
  generate->add_option("--tokenizer", gen_tokenizer,
                       "Hugging Face tokenizer directory (default: the model's, or its run's pretrained directory); bytes: ids are bytes");
  generate->add_option("--max-new-tokens", gen.max_new_tokens, "tokens to add")->check(kNonNegative);
  generate->add_option("--temperature", gen.temperature, "0: greedy; > 0: sample softmax(logits / temperature)")
      ->check(kNonNegative);
  generate->add_option("--top-k", gen.top_k, "sample among the K most likely tokens (0: all)")->check(kNonNegative);
  generate->add_option("--seed", gen.seed, "sampling seed");
  generate->add_option("--set", gen_sets, "override a config key (e.g. train.device=cuda)");
  bool gen_allow_nonfinite = false;
  generate->add_flag("--allow-nonfinite", gen_allow_nonfinite, "generate from weights holding NaN or Inf (refused by default)");

  auto* export_cmd = app.add_subcommand("export", "Write a checkpoint as a Hugging Face model directory: lofi export --format hf IN OUT_DIR");
  family::ExportOptions export_opt;
  std::string export_in, export_out;
  export_cmd->add_option("--format", export_opt.format, "output format: hf (config.json + model.safetensors)")->required();
  export_cmd->add_option("in", export_in, "lofi checkpoint (.safetensors with lofi.config metadata) or run directory (its merged.safetensors)")
      ->required()->check(CLI::ExistingPath);
  export_cmd->add_option("out", export_out, "new output directory")->required();
  export_cmd->add_option("--dtype", export_opt.dtype, "F32 (default), F16 or BF16");
  export_cmd->add_option("--shard-size", export_opt.shard_bytes, "write shards of at most this many bytes + model.safetensors.index.json");
  export_cmd->add_flag("--allow-nonfinite", export_opt.allow_nonfinite, "export weights holding NaN or Inf (refused by default)");

  auto* inspect = app.add_subcommand("inspect", "List a checkpoint's tensors, shapes, dtypes and metadata");
  std::string inspect_path;
  inspect->add_option("file", inspect_path, "safetensors file")->required()->check(CLI::ExistingFile);

  auto* prepare = app.add_subcommand("prepare", "Tokenize text or JSONL files into llm.c token shards for train / eval");
  data::PrepareOptions prep;
  bool prep_quiet = false;
  prepare->add_option("files", prep.inputs, "plain text (one document per file) or JSONL (one {\"text\": ...} per line; .jsonl or detected)")
      ->required();
  prepare->add_option("--tokenizer,-t", prep.tokenizer, "Hugging Face tokenizer directory: tokenizer.json, or vocab.json + merges.txt")
      ->required();
  prepare->add_option("--out,-o", prep.out, "output prefix: OUT.train.bin, and OUT.val.bin with --val-fraction")->required();
  prepare->add_option("--val-fraction", prep.val_fraction, "share of documents for validation, picked by a hash of (seed, document index)")
      ->check(CLI::Range(0.0, 0.999999));
  prepare->add_option("--seed", prep.seed, "seed of the validation split");
  prepare->add_option("--shard-tokens", prep.shard_tokens,
                      "at most this many tokens per file: OUT.train-00000.bin, OUT.train-00001.bin, ... (0: one file per split)")
      ->check(kNonNegative);
  prepare->add_option("--threads", prep.threads, "tokenizing threads (default: all cores)")->check(kPositive);
  prepare->add_flag("--quiet", prep_quiet, "no progress line");

  auto* demo = app.add_subcommand("demo", "The embedded default: baseline vs lo-fi on a small language model and a small ViT, with shifts");
  demo::DemoOptions demo_opt;
  demo->add_option("--out", demo_opt.out, "output directory");
  demo->add_option("--workers", demo_opt.workers, "baseline workers = lo-fi nodes")->check(kPositive);
  demo->add_option("--pretrain-steps", demo_opt.pretrain_steps, "pretraining steps (cached)");
  demo->add_option("--steps", demo_opt.finetune_steps, "fine-tuning steps");
  demo->add_option("--eval-windows", demo_opt.eval_windows, "windows per evaluation set");
  demo->add_flag("--fresh", demo_opt.fresh, "regenerate data and retrain the pretrained models (the vision one took 90 minutes on 2 cores)");
  demo->add_option("--only", demo_opt.only, "run one half: language or vision")
      ->check(CLI::IsMember({"language", "vision"}));
  demo->add_option("--vision-pretrain-steps", demo_opt.vision_pretrain_steps, "vision pretraining steps (cached; the default's model is shipped in the binary, other counts train anew: about 11 minutes per 1000 steps on 2 cores)");
  demo->add_option("--vision-steps", demo_opt.vision_steps, "vision fine-tuning steps");
  demo->add_option("--sync-every", demo_opt.sync_every, "local SGD and DiLoCo average every N steps (0: leave them out)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*train) {
      train::StartOptions start;
      start.mode = resume || resume_changed ? run::StartMode::resume
                   : overwrite             ? run::StartMode::overwrite
                                           : run::StartMode::fresh;
      start.allow_changed = resume_changed;
      io::stop_gracefully_on_signals();  // a first signal checkpoints and stops at the next read
      return cmd_train(config_path, sets, start, print_config, quiet);
    }
    if (*launch) {
      launch_opt.args = launch_args;
      return dist::launch_workers(launch_opt);
    }
    if (*average) {
      avg.config_changes = [](const std::string& a, const std::string& b) {
        return train::trajectory_changes(a, b, "average");
      };
      merge::AverageResult r = merge::average_checkpoints(avg);
      for (const auto& s : r.skipped) std::fprintf(stderr, "lofi: warning: left out %s\n", s.c_str());
      std::printf("averaged %zu checkpoints into %s\n", r.used.size(), avg.out.c_str());
      return 0;
    }
    if (*merge_cmd) {
      mrg.config_changes = [](const std::string& a, const std::string& b) { return train::trajectory_changes(a, b, "merge"); };
      merge::MergeResult r = merge::merge_checkpoints(mrg);
      for (const auto& s : r.skipped) std::fprintf(stderr, "lofi: warning: left out %s\n", s.c_str());
      std::printf("merged %zu checkpoints (%s) into %s\n", r.used.size(), mrg.method.c_str(), mrg.out.c_str());
      return 0;
    }
    if (*eval_cmd) return cmd_eval(ev);
    if (*soup) return cmd_soup(soup_candidates, ev, soup_out, soup_allow_nonfinite);
    if (*interpolate) return cmd_interpolate(interp_a, interp_b, interp_points, ev);
    if (*generate) return cmd_generate(gen_model, gen_prompt, gen_tokenizer, gen, gen_sets, gen_allow_nonfinite);
    if (*inspect) return cmd_inspect(inspect_path);
    if (*export_cmd) {
      for (const auto& f : family::export_checkpoint(export_in, export_out, export_opt)) std::printf("written: %s\n", f.c_str());
      return 0;
    }
    if (*prepare) return prep.progress = !prep_quiet, cmd_prepare(prep);
    if (*report) return std::printf("written: %s\n", eval::write_run_report(report_dir, report_out).c_str()) < 0;
    if (*demo) return demo::run_demo(demo_opt);
  } catch (const std::exception& e) {
    std::string what = e.what();
    std::fprintf(stderr, "lofi: error: %s\n", what.substr(0, what.find('\n')).c_str());
    return 1;
  }
  return 0;
}
