#include "lofi/train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "lofi/data/sampler.h"
#include "lofi/dist/comm.h"
#include "lofi/dist/device.h"
#include "lofi/dist/grad_sync.h"
#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/merge/average.h"
#include "lofi/model/hf.h"
#include "lofi/model/weights.h"
#include "lofi/train/checkpoint.h"
#include "lofi/train/export.h"
#include "lofi/train/optimizer.h"
#include "lofi/train/schedule.h"
#include "lofi/train/task.h"

namespace lofi::train {
namespace {

using Clock = std::chrono::steady_clock;

// Metrics of one node, one JSON object per line; on resume, lines past the checkpoint go.
class MetricsLog {
 public:
  MetricsLog(const std::string& path, int64_t resume_step) : path_(path) {
    if (resume_step > 0) {
      std::ifstream in(path);
      std::string line, kept;
      while (std::getline(in, line))
        if (auto record = nlohmann::json::parse(line, nullptr, false);
            record.is_object() && record.value("step", int64_t{0}) <= resume_step)
          kept += line + "\n";  // a torn last line from a killed run is dropped
      io::write_file_atomic(path, kept);
    }
    out_.open(path, resume_step > 0 ? std::ios::app : std::ios::trunc);
    if (!out_) fail(path, ": cannot open for writing");
  }
  void write(const nlohmann::json& record) { out_ << record.dump() << "\n" << std::flush; }

 private:
  std::string path_;
  std::ofstream out_;
};

std::string format_duration(double seconds) {
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

}  // namespace

model::CausalLm make_model(const ModelConfig& config, uint64_t seed) {
  ModelConfig resolved = config;
  apply_hf_init(resolved);
  torch::manual_seed(seed);
  model::CausalLm lm = model::make_causal_lm(lm_config(resolved));
  model::init_causal_lm_weights(*lm);
  if (model::is_hf_model_dir(resolved.init)) {
    model::load_hf_weights(*lm, resolved.init);
  } else if (!resolved.init.empty()) {
    io::SafetensorsFile init(resolved.init);
    model::load_module_weights(*lm, init, {"lm_head.weight"});
  }
  return lm;
}

Config config_from_checkpoint(const std::string& path) {
  io::SafetensorsFile file(path);
  Config config;
  auto it = file.metadata().find("lofi.config");
  if (it == file.metadata().end())
    fail(path, ": no lofi.config in its metadata; give the model's shape with --config or --set model.*");
  apply_toml_text(config, it->second, path + " (lofi.config)");
  config.model.init = path;
  return config;
}

std::string node_dir(const std::string& run_dir, int64_t node) {
  char name[32];
  std::snprintf(name, sizeof(name), "node-%02lld", static_cast<long long>(node));
  return run_dir + "/" + name;
}

TrainSummary run_training(const Config& config, const dist::WorkerEnv& env, bool resume) {
  const auto& tc = config.train;
  const dist::Topology topo = dist::make_topology(env, config.dist.nodes, config.dist.node_id);
  // The paper's same-data rule: global batch B over N nodes, B / N per node, split over its workers.
  const int64_t node_batch = tc.batch_size / topo.nodes;
  if (node_batch % (topo.node_size * tc.grad_accum) != 0)
    fail("config: the node batch (train.batch_size / dist.nodes = ", node_batch, ") must be divisible by ",
         topo.node_size, " workers x train.grad_accum = ", tc.grad_accum);
  const int64_t rank_batch = node_batch / topo.node_size, micro_batch = rank_batch / tc.grad_accum;

  torch::set_num_threads(tc.threads > 0 ? static_cast<int>(tc.threads) : dist::default_threads(env));
  const torch::Device device = dist::resolve_device(tc.device, env.local_rank, "train.device");
  dist::check_precision(tc.precision, device, "train.precision");
  // NCCL refuses two ranks of one group on one GPU: a node of several workers needs a GPU each.
  const bool shares_gpu = tc.device.rfind("cuda:", 0) == 0 || env.local_world_size > dist::build_info().gpus;
  if (device.is_cuda() && topo.node_size > 1 && shares_gpu)
    fail("train.device = \"", tc.device, "\" puts the ", topo.node_size, " workers of node ", topo.node,
         " on shared GPUs, which NCCL refuses; give each worker its own GPU (\"cuda\": cuda:LOCAL_RANK, at most one ",
         "worker per GPU) or use \"cpu\"");
  // Every node starts from the same weights: the init depends on the seed alone.
  std::unique_ptr<Task> task = make_task(config, topo, data::mix_seed(static_cast<uint64_t>(tc.seed)), device);
  torch::nn::Module& model = task->model();
  const int64_t units_per_sample = task->units_per_sample();
  const std::string unit = task->unit();

  dist::Comm comm(env, topo, config.dist.timeout_s, config.dist.sync_every > 0, device);
  const std::string run_dir = config.run.dir, my_dir = node_dir(run_dir, topo.node);
  const bool node_leader = topo.node_rank == 0;
  if (node_leader) io::make_dirs(my_dir);
  // The whole job's config sits at the run root; a node_id job keeps its own beside its files.
  if (topo.whole_job && env.rank == 0) io::write_file_atomic(run_dir + "/config.toml", to_toml(config));
  if (!topo.whole_job && node_leader) io::write_file_atomic(my_dir + "/config.toml", to_toml(config));

  model.train();
  Optimizer optimizer(model, tc);
  int64_t start_step = 0;
  if (resume) {
    auto ckpt = latest_checkpoint(my_dir);
    if (!ckpt) fail("--resume: no checkpoint in ", my_dir, "/ckpt");
    // Nodes that meet during training (sync_every) must restart from one step: the oldest.
    if (config.dist.sync_every > 0) ckpt = checkpoint_paths(my_dir, comm.agree_min("resume-step", ckpt->step));
    start_step = load_checkpoint(*ckpt, model, optimizer);
  } else if (node_leader) {
    remove_checkpoints(my_dir);  // a fresh run: a later --resume must not find an older run's state
  }
  std::unique_ptr<MetricsLog> metrics;
  if (node_leader) metrics = std::make_unique<MetricsLog>(my_dir + "/metrics.jsonl", start_step);

  std::vector<torch::Tensor> params;
  std::vector<std::string> names;
  for (const auto& p : optimizer.params()) params.push_back(p.param), names.push_back(p.name);
  dist::GradientSync grad_sync(comm, params, names, config.dist.overlap, config.dist.bucket_mb);
  const Schedule schedule{tc.lr, tc.min_lr, tc.warmup_steps, tc.steps};
  const bool tty = node_leader && ::isatty(STDOUT_FILENO);
  const auto t0 = Clock::now();
  double last_loss = 0;
  int64_t units_seen = start_step * node_batch * units_per_sample;

  for (int64_t step = start_step; step < tc.steps; ++step) {
    // ---- the training step -------------------------------------------------------------
    const double lr = lr_at(schedule, step);
    optimizer.set_lr(lr);
    optimizer.zero_grad();
    task->begin_step(step, node_batch);
    torch::Tensor loss_sum = torch::zeros({1}, torch::TensorOptions().device(device));
    for (int64_t micro = 0; micro < tc.grad_accum; ++micro) {
      torch::manual_seed(data::mix_seed(static_cast<uint64_t>(tc.seed), static_cast<uint64_t>(topo.node),
                                        static_cast<uint64_t>(topo.node_rank * tc.grad_accum + micro), static_cast<uint64_t>(step)));
      torch::Tensor loss;
      {
        dist::PrecisionGuard precision(device, tc.precision);  // bf16 forward, fp32 backward into fp32 weights
        loss = task->loss(topo.node_rank * rank_batch + micro * micro_batch, micro_batch) / static_cast<double>(tc.grad_accum);
      }
      grad_sync.before_backward(/*sync=*/micro == tc.grad_accum - 1);
      loss.backward();
      loss_sum += loss.detach();
    }
    grad_sync.after_backward();  // gradients averaged inside this node only
    comm.node_mean({loss_sum});  // the node's loss, for the log
    if (tc.grad_clip > 0) clip_grad_norm(params, tc.grad_clip);
    optimizer.step();
    if (config.dist.sync_every > 0 && (step + 1) % config.dist.sync_every == 0) comm.world_mean(params);
    // ---- end of the training step ------------------------------------------------------

    last_loss = loss_sum.item<double>();
    units_seen += node_batch * units_per_sample;
    const int64_t done = step + 1;
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const double rate = static_cast<double>(units_seen - start_step * node_batch * units_per_sample) / std::max(seconds, 1e-9);
    const double eta = seconds / static_cast<double>(done - start_step) * static_cast<double>(tc.steps - done);
    if (!node_leader) continue;
    const bool eval_now = task->has_validation() && done % tc.eval_every == 0;
    if (done % tc.log_every == 0 || done == tc.steps || eval_now) {
      nlohmann::json record{{"step", done}, {"loss", last_loss}, {"lr", lr}, {unit, units_seen},
                            {"seconds", seconds}, {unit + "_per_s", rate},
                            {"bytes_sent", comm.bytes_within_node() + comm.bytes_between_nodes()},
                            {"bytes_within_node", comm.bytes_within_node()},
                            {"bytes_between_nodes", comm.bytes_between_nodes()}, {"node_workers", topo.node_size}};
      if (eval_now) record.update(task->validate(micro_batch));
      metrics->write(record);
      if (!tty)
        std::printf("node %lld step %lld/%lld loss %.4f lr %.2e %.0f %s/s ETA %s\n", static_cast<long long>(topo.node),
                    static_cast<long long>(done), static_cast<long long>(tc.steps), last_loss, lr, rate, unit.c_str(),
                    format_duration(eta).c_str());
    }
    if (tty)
      std::printf("\rnode %lld step %lld/%lld loss %.4f %.0f %s/s ETA %s   ", static_cast<long long>(topo.node),
                  static_cast<long long>(done), static_cast<long long>(tc.steps), last_loss, rate, unit.c_str(),
                  format_duration(eta).c_str());
    std::fflush(stdout);
    if (tc.ckpt_every > 0 && done % tc.ckpt_every == 0 && done < tc.steps) save_checkpoint(my_dir, done, model, optimizer);
  }
  if (tty) std::printf("\n");

  TrainSummary summary;
  summary.node = topo.node;
  summary.steps = tc.steps;
  summary.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  summary.final_loss = last_loss;
  summary.bytes_within_node = comm.bytes_within_node();
  summary.bytes_between_nodes = comm.bytes_between_nodes();
  if (node_leader) {
    save_checkpoint(my_dir, tc.steps, model, optimizer);
    io::Metadata meta = task->metadata();
    meta.insert({{"lofi.node", std::to_string(topo.node)}, {"lofi.nodes", std::to_string(topo.nodes)},
                 {"lofi.step", std::to_string(tc.steps)}, {"lofi.config", to_toml(config)}});
    io::save_safetensors(my_dir + "/final.safetensors", model::module_weights(model), meta);
    // A run from a Hugging Face directory hands its result back in that form: the merged model
    // of a whole lo-fi job (below), else each node's final.
    const bool merges = topo.whole_job && topo.nodes > 1;
    if (!merges && model::is_hf_model_dir(config.model.init)) write_hf_output(my_dir + "/final.safetensors", my_dir + "/final-hf");
    comm.announce_node_done();
  }
  if (env.rank == 0 && topo.whole_job && topo.nodes > 1) {
    comm.wait_all_nodes_done(config.dist.timeout_s + summary.seconds);
    std::vector<std::string> finals;
    for (int64_t k = 0; k < topo.nodes; ++k) finals.push_back(node_dir(run_dir, k) + "/final.safetensors");
    merge::average_files(finals, {}, run_dir + "/merged.safetensors");
    if (model::is_hf_model_dir(config.model.init)) write_hf_output(run_dir + "/merged.safetensors", run_dir + "/merged-hf");
    std::printf("merged %lld nodes into %s/merged.safetensors\n", static_cast<long long>(topo.nodes), run_dir.c_str());
  }
  return summary;
}

}  // namespace lofi::train
