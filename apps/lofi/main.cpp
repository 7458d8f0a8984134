// lofi: distributed fine-tuning without communication. Subcommands only: each parses its flags
// and calls the library; errors are printed on one line with a non-zero exit.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "lofi/data/token_shards.h"
#include "lofi/demo/demo.h"
#include "lofi/dist/env.h"
#include "lofi/dist/launcher.h"
#include "lofi/error.h"
#include "lofi/eval/perplexity.h"
#include "lofi/eval/table.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/merge/average.h"
#include "lofi/train/config.h"
#include "lofi/train/trainer.h"

namespace {

using namespace lofi;

int cmd_train(const std::string& config_path, const std::vector<std::string>& sets, bool resume, bool print_only,
              bool quiet) {
  train::Config config = train::load_config(config_path, sets);
  if (print_only) {
    std::cout << train::to_toml(config);
    return 0;
  }
  dist::WorkerEnv env = dist::worker_env_from_environment();
  if (env.rank == 0 && !quiet) std::cout << "# resolved config\n" << train::to_toml(config) << std::flush;
  train::TrainSummary s = train::run_training(config, env, resume);
  if (env.rank == 0)
    std::printf("done: node %lld, %lld steps in %.1f s, final loss %.4f, bytes sent %lld (between nodes %lld)\n",
                static_cast<long long>(s.node), static_cast<long long>(s.steps), s.seconds, s.final_loss,
                static_cast<long long>(s.bytes_within_node + s.bytes_between_nodes),
                static_cast<long long>(s.bytes_between_nodes));
  return 0;
}

int cmd_eval(const std::string& model_path, const std::vector<std::string>& data_args, const std::string& config_path,
             const std::vector<std::string>& sets, int64_t seq_len, int64_t batch, int64_t max_windows,
             const std::string& json_path) {
  train::Config config = config_path.empty() ? train::config_from_checkpoint(model_path) : train::load_config(config_path, {});
  for (const auto& s : sets) train::apply_override(config, s);
  config.model.init = model_path;
  train::validate(config);
  if (seq_len <= 0) seq_len = config.data.seq_len;
  model::Gpt gpt = train::make_gpt(config.model, 0);
  eval::ResultsTable table({"dataset", "tokens", "loss", "perplexity"});
  for (const auto& arg : data_args) {
    auto eq = arg.find('=');
    if (eq == std::string::npos || eq == 0) fail("--data '", arg, "': expected NAME=PATH");
    std::string name = arg.substr(0, eq), path = arg.substr(eq + 1);
    data::TokenShards tokens(data::split_paths(path), config.model.vocab_size);
    auto score = eval::evaluate_lm(gpt, tokens, seq_len, batch, max_windows);
    table.add_row({name, std::to_string(score.tokens), eval::format_fixed(score.loss, 4), eval::format_fixed(score.perplexity, 3)},
                  {{"dataset", name}, {"path", path}, {"tokens", score.tokens}, {"loss", score.loss}, {"perplexity", score.perplexity}});
  }
  std::cout << "model: " << model_path << "\n" << table.text();
  if (!json_path.empty()) io::write_file_atomic(json_path, nlohmann::json{{"model", model_path}, {"results", table.json()}}.dump(2) + "\n");
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

int main(int argc, char** argv) {
  CLI::App app{"lofi: fine-tune across nodes without communicating gradients, then average the weights"};
  app.set_version_flag("--version", std::string("lofi ") + LOFI_VERSION);
  app.require_subcommand(1);

  auto* train = app.add_subcommand("train", "Train or fine-tune (one worker; run it under `lofi launch`, torchrun or srun)");
  std::string config_path;
  std::vector<std::string> sets;
  bool resume = false, print_config = false, quiet = false;
  train->add_option("--config,-c", config_path, "TOML config file")->check(CLI::ExistingFile);
  train->add_option("--set", sets, "override a config key: section.key=value (repeatable)");
  train->add_flag("--resume", resume, "continue from the newest checkpoint in each node's ckpt/");
  train->add_flag("--print-config", print_config, "print the resolved config and exit");
  train->add_flag("--quiet", quiet, "do not echo the resolved config (it is still written to the run directory)");

  auto* launch = app.add_subcommand("launch", "Run K local workers with torchrun's environment: lofi launch --workers K -- train ...");
  dist::LaunchOptions launch_opt;
  std::vector<std::string> launch_args;
  launch->add_option("--workers,-k", launch_opt.workers, "number of worker processes")->check(CLI::PositiveNumber);
  launch->add_option("--threads", launch_opt.threads, "intra-op threads per worker (default: cores / workers)");
  launch->add_option("--master-port", launch_opt.master_port, "rendezvous port on 127.0.0.1 (default: a free one)");
  launch->add_option("command", launch_args, "lofi subcommand and its arguments, after --")->required();

  auto* average = app.add_subcommand("average", "Average checkpoints or run directories: lofi average A B ... --out OUT");
  merge::AverageOptions avg;
  average->add_option("inputs", avg.inputs, "safetensors checkpoints, or run directories (their node-*/final.safetensors)")
      ->required();
  average->add_option("--out,-o", avg.out, "output .safetensors (a new directory with --shard-size)")->required();
  average->add_option("--weights", avg.weights, "weights w1,w2,... (normalised)")->delimiter(',');
  average->add_option("--dtype", avg.dtype, "output dtype: F32, F16, BF16 or F64 (default: as the inputs)");
  average->add_option("--shard-size", avg.shard_bytes, "write Hugging Face shards of at most this many bytes");
  average->add_option("--min-inputs", avg.min_inputs,
                      "merge whichever inputs exist and verify, naming the others; fail under this many");
  average->add_option("--threads", avg.threads, "threads (default: all cores)");

  auto* eval_cmd = app.add_subcommand("eval", "Loss and perplexity of a model on named token datasets");
  std::string eval_model, eval_config, eval_json;
  std::vector<std::string> eval_data, eval_sets;
  int64_t eval_seq = 0, eval_batch = 16, eval_windows = 0;
  eval_cmd->add_option("--model,-m", eval_model, "safetensors checkpoint")->required()->check(CLI::ExistingFile);
  eval_cmd->add_option("--data,-d", eval_data, "NAME=PATH of token shards (repeatable)")->required();
  eval_cmd->add_option("--config,-c", eval_config, "config giving the model's shape (default: the checkpoint's own)");
  eval_cmd->add_option("--set", eval_sets, "override a config key: section.key=value");
  eval_cmd->add_option("--seq-len", eval_seq, "window length (default: data.seq_len)");
  eval_cmd->add_option("--batch", eval_batch, "windows per forward pass")->check(CLI::PositiveNumber);
  eval_cmd->add_option("--max-windows", eval_windows, "score at most this many windows per dataset (0: all)");
  eval_cmd->add_option("--json", eval_json, "also write the results as JSON here");

  auto* inspect = app.add_subcommand("inspect", "List a checkpoint's tensors, shapes, dtypes and metadata");
  std::string inspect_path;
  inspect->add_option("file", inspect_path, "safetensors file")->required()->check(CLI::ExistingFile);

  auto* demo = app.add_subcommand("demo", "The embedded default: baseline vs lo-fi on a small language model, with shifts");
  demo::DemoOptions demo_opt;
  demo->add_option("--out", demo_opt.out, "output directory");
  demo->add_option("--workers", demo_opt.workers, "baseline workers = lo-fi nodes")->check(CLI::PositiveNumber);
  demo->add_option("--pretrain-steps", demo_opt.pretrain_steps, "pretraining steps (cached)");
  demo->add_option("--steps", demo_opt.finetune_steps, "fine-tuning steps");
  demo->add_option("--eval-windows", demo_opt.eval_windows, "windows per evaluation set");
  demo->add_flag("--fresh", demo_opt.fresh, "regenerate data and retrain the pretrained model");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*train) return cmd_train(config_path, sets, resume, print_config, quiet);
    if (*launch) {
      launch_opt.args = launch_args;
      return dist::launch_workers(launch_opt);
    }
    if (*average) {
      merge::AverageResult r = merge::average_checkpoints(avg);
      for (const auto& s : r.skipped) std::fprintf(stderr, "lofi: warning: left out %s\n", s.c_str());
      std::printf("averaged %zu checkpoints into %s\n", r.used.size(), avg.out.c_str());
      return 0;
    }
    if (*eval_cmd) return cmd_eval(eval_model, eval_data, eval_config, eval_sets, eval_seq, eval_batch, eval_windows, eval_json);
    if (*inspect) return cmd_inspect(inspect_path);
    if (*demo) return demo::run_demo(demo_opt);
  } catch (const std::exception& e) {
    std::string what = e.what();
    std::fprintf(stderr, "lofi: error: %s\n", what.substr(0, what.find('\n')).c_str());
    return 1;
  }
  return 0;
}
