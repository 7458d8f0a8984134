#include "lofi/train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "lofi/data/fingerprint.h"
#include "lofi/data/sampler.h"
#include "lofi/data/token_shards.h"
#include "lofi/dist/comm.h"
#include "lofi/dist/device.h"
#include "lofi/dist/grad_sync.h"
#include "lofi/dist/node_status.h"
#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/io/safetensors_set.h"
#include "lofi/io/temporaries.h"
#include "lofi/merge/nonfinite.h"
#include "lofi/model/weights.h"
#include "lofi/run/run_dir.h"
#include "lofi/seed.h"
#include "lofi/train/checkpoint.h"
#include "lofi/train/metrics_log.h"
#include "lofi/train/optimizer.h"
#include "lofi/train/schedule.h"
#include "lofi/train/step_health.h"
#include "lofi/train/step_profiler.h"
#include "lofi/train/task.h"
#include "lofi/text.h"

namespace lofi::train {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

namespace {

// The config.toml of a run: the config this start runs with, then one comment line per start of
// the run (kept from the file before), saying where it began and what it changed.
void write_run_config(const std::string& path, const Config& config, const StartOptions& start, int64_t start_step,
                      const std::vector<std::string>& changes) {
  std::string history;
  if (start.mode == run::StartMode::resume && std::filesystem::exists(path)) {
    std::istringstream old(io::read_text_file(path));
    for (std::string line; std::getline(old, line);)
      if (line.rfind("# segment ", 0) == 0) history += line + "\n";
  }
  const int64_t segment = std::count(history.begin(), history.end(), '\n') + 1;
  const std::time_t now = std::time(nullptr);
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  history += cat("# segment ", segment, ": steps ", start_step, "-", config.train.steps, ", started ", when,
                 start_step > 0 ? " (resumed)" : "");
  for (size_t i = 0; i < changes.size(); ++i) history += cat(i == 0 ? "; changed " : ", ", changes[i]);
  io::write_file_atomic(path, to_toml(config) + "\n# What each start of this run ran with (lofi appends a line per start):\n" +
                                  history + "\n");
}

// --resume: the newest checkpoint that verifies (nodes that meet agree on one step), refused when
// its config differs in a way that changes the trajectory unless ALLOW_CHANGED.
run::Checkpoint resume_point(const Config& config, const run::NodeDir& node, bool verbose, dist::Comm& comm,
                             bool allow_changed, std::vector<std::string>& changes) {
  auto ckpt = newest_valid_checkpoint(node, verbose);
  if (!ckpt) fail("--resume: no checkpoint in ", node.checkpoint_dir(), "; start without --resume (or with --overwrite)");
  // Nodes that meet during training (sync_every) must restart from one step: the oldest.
  if (config.dist.sync_every > 0) {
    ckpt = node.checkpoint(comm.agree_min("resume-step", ckpt->step));
    verify_checkpoint(*ckpt);
  }
  if (const std::string text = checkpoint_config(*ckpt); !text.empty()) {
    Config was;
    apply_toml_text(was, text, ckpt->weights + " (lofi.config)");
    changes = trajectory_changes(was, config);
  }
  // The data itself: the same paths may hold other tokens now.
  if (const auto was = data::fingerprints_from_json(checkpoint_data(*ckpt)); !was.empty())
    for (const auto& file : data::changed_files(was, data::fingerprint_files(data::split_paths(config.data.train))))
      changes.push_back("data.train changed: " + file);
  if (!changes.empty() && !allow_changed) {
    std::string list;
    for (const auto& c : changes) list += (list.empty() ? "" : ", ") + c;
    fail("--resume: ", ckpt->weights, " was trained with other settings (", list, "), which change what the run computes; ",
         "restore them, or pass --resume-changed if the change is meant");
  }
  return *ckpt;
}

// The XXH3 of the pretrained start (a safetensors file, or a Hugging Face directory's weights), so
// merges can tell models fine-tuned from different starts; empty for a random init.
std::string init_checksum(const std::string& init) {
  if (init.empty()) return "";
  return io::SafetensorsSet(init).checksum();
}

std::string number_text(double v) {
  if (std::isfinite(v)) return std::to_string(v);
  return std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
}

// The step's metrics record (metrics.jsonl) from a reading of the device-side state.
nlohmann::json step_record(int64_t done, const StepHealth::Reading& r, double lr, const std::string& unit, int64_t units_seen,
                           double seconds, double rate, const dist::Comm& comm, const dist::Topology& topo) {
  nlohmann::json record{{"step", done}, {"loss", r.loss}, {"grad_norm", r.grad_norm}, {"lr", lr}, {unit, units_seen},
                        {"seconds", seconds}, {unit + "_per_s", rate},
                        {"bytes_sent", comm.bytes_within_node() + comm.bytes_between_nodes()},
                        {"bytes_within_node", comm.bytes_within_node()},
                        {"bytes_between_nodes", comm.bytes_between_nodes()}, {"node_workers", topo.node_size}};
  if (r.skipped > 0) record["skipped_nonfinite"] = r.skipped;
  if (r.diverged_at > 0) record["diverged_at_step"] = r.diverged_at;
  return record;
}

// One line per read that found newly skipped steps.
void report_skips(int64_t node, int64_t done, const StepHealth::Reading& r, int64_t allowed) {
  if (r.new_skips == 0) return;
  std::printf("node %lld by step %lld: %lld step%s with a non-finite loss or gradient norm, the first at step %lld: "
              "step%s skipped (%lld of train.skip_nonfinite = %lld)\n",
              static_cast<long long>(node), static_cast<long long>(done), static_cast<long long>(r.new_skips),
              r.new_skips > 1 ? "s" : "", static_cast<long long>(r.first_new_skip), r.new_skips > 1 ? "s" : "",
              static_cast<long long>(r.skipped), static_cast<long long>(allowed));
}

}  // namespace

TrainedWorker run_training(const Config& config, const dist::WorkerEnv& env, const TaskFactory& make_task,
                           const StartOptions& start) {
  const auto& tc = config.train;
  const dist::Topology topo = dist::make_topology(env, config.dist.nodes, config.dist.node_id);
  // The paper's same-data rule: global batch B over N nodes, B / N per node, split over its workers.
  const int64_t node_batch = tc.batch_size / topo.nodes;
  if (node_batch % (topo.node_size * tc.grad_accum) != 0)
    fail("config: the node batch (train.batch_size / dist.nodes = ", node_batch, ") must be divisible by ",
         topo.node_size, " workers x train.grad_accum = ", tc.grad_accum);
  const int64_t rank_batch = node_batch / topo.node_size, micro_batch = rank_batch / tc.grad_accum;

  torch::set_num_threads(tc.threads > 0 ? static_cast<int>(tc.threads) : dist::default_threads(env));
  const dist::BuildInfo build = dist::build_info();
  const dist::DevicePlan plan = dist::plan_device(tc.device, env.local_rank, env.local_world_size, topo.node_rank,
                                                  topo.node_size, build.gpus, build.cuda_compiled, "train.device");
  const torch::Device device = plan.device;
  dist::check_precision(tc.precision, device, "train.precision");

  // The run directory belongs to this run, and a start says what it does with an older one; all
  // refused before the rendezvous, so a refusal stops the whole job.
  const run::RunDir run_dir(config.run.dir);
  const run::NodeDir my_dir = run_dir.node(topo.node);
  const bool node_leader = topo.node_rank == 0;
  // --resume with another node count: every node's data share would change, and the new nodes
  // have no checkpoint. Said by name before any node directory is made.
  if (start.mode == run::StartMode::resume && topo.whole_job)
    if (const auto was = run_dir.config_value("dist.nodes"); was && !was->empty() && *was != std::to_string(config.dist.nodes))
      fail("--resume: ", config.run.dir, " was trained with dist.nodes = ", *was, ", this start has dist.nodes = ",
           config.dist.nodes, "; a run resumes with its own node count (each node's data and checkpoints depend on it): ",
           "set dist.nodes = ", *was, ", or start another run.dir");
  std::unique_ptr<run::NodeDirLock> lock;
  if (node_leader) {
    lock = std::make_unique<run::NodeDirLock>(my_dir);
    run::prepare_node_dir(my_dir, start.mode);
    if (start.mode == run::StartMode::resume && !my_dir.latest_checkpoint())
      fail("--resume: no checkpoint in ", my_dir.checkpoint_dir(), "; start without --resume (or with --overwrite)");
  }
  if (topo.whole_job && env.rank == 0) run::prepare_run_root(run_dir, start.mode);

  // Every node starts from the same weights: the init depends on the seed alone.
  std::unique_ptr<Task> task = make_task(config, topo, seed::init(static_cast<uint64_t>(tc.seed)));
  // A pretrained start holding NaN or Inf would only surface as a "divergence" at step 1.
  if (!config.model.init.empty() && start.mode != run::StartMode::resume)
    merge::refuse_nonfinite_weights(model::module_weights(task->model()), "model.init " + config.model.init,
                                    "the weights of a diverged run cannot be fine-tuned; give another model.init");
  task->model().to(device);
  task->set_device(device);
  torch::nn::Module& model = task->model();
  const int64_t units_per_sample = task->units_per_sample();
  const std::string unit = task->unit();

  dist::CommOptions comm_options;
  comm_options.timeout_s = config.dist.timeout_s;
  comm_options.world_group = config.dist.sync_every > 0;
  comm_options.device = device;
  comm_options.node_backend = plan.node_backend;
  comm_options.bind = config.dist.bind;
  comm_options.node_dir = my_dir.path();
  dist::Comm comm(env, topo, comm_options);
  const std::string config_toml = to_toml(config);
  // What the checkpoints record of the data, so --resume can tell when it changed.
  const std::string data_prints = data::fingerprints_json(data::fingerprint_files(data::split_paths(config.data.train)));

  model.train();
  Optimizer optimizer(model, tc);
  int64_t start_step = 0;
  std::vector<std::string> changes;
  // LP-FT: the new head fitted on frozen features before fine-tuning's first step, with the global
  // batch on every worker whatever the topology (a resumed run has its head in the checkpoint).
  if (tc.head_init == "lp" && start.mode != run::StartMode::resume) {
    const std::string done = task->probe_head(tc.lp_steps, tc.lp_lr, tc.batch_size);
    if (node_leader && topo.node == 0) std::printf("%s\n", done.c_str());
  }
  // DiLoCo's outer optimizer, from the weights every node starts from (or its checkpointed state).
  std::unique_ptr<OuterOptimizer> outer;
  if (config.dist.outer_optimizer == "nesterov")
    outer = std::make_unique<OuterOptimizer>(optimizer.params(), config.dist.outer_lr, config.dist.outer_momentum);
  if (start.mode == run::StartMode::resume)
    start_step = load_checkpoint(resume_point(config, my_dir, node_leader, comm, start.allow_changed, changes), model,
                                 optimizer, outer.get());
  // The whole job's config sits at the run root; a node_id job keeps its own beside its files.
  if (topo.whole_job && env.rank == 0) write_run_config(run_dir.config(), config, start, start_step, changes);
  if (!topo.whole_job && node_leader) write_run_config(my_dir.config(), config, start, start_step, changes);
  std::unique_ptr<MetricsLog> metrics;
  std::unique_ptr<dist::NodeHeartbeat> heartbeat;
  if (node_leader) {
    metrics = std::make_unique<MetricsLog>(my_dir, start_step, tc.tensorboard);
    heartbeat = std::make_unique<dist::NodeHeartbeat>(my_dir.path(), comm.attempt(), start_step, tc.steps);
  }

  const std::string init_xxh3 = node_leader ? init_checksum(config.model.init) : "";
  TrainedWorker worker;
  TrainSummary& summary = worker.summary;
  summary.node = topo.node;
  summary.steps = tc.steps;
  try {
    std::vector<torch::Tensor> params;
    std::vector<std::string> names;
    for (const auto& p : optimizer.params()) params.push_back(p.param), names.push_back(p.name);
    dist::GradientSync grad_sync(comm, params, names, config.dist.overlap, config.dist.bucket_mb);
    const Schedule schedule{tc.lr, tc.min_lr, tc.warmup_steps, tc.steps};
    const bool tty = node_leader && ::isatty(STDOUT_FILENO);
    const auto t0 = Clock::now();
    double last_loss = 0;
    int64_t units_seen = start_step * node_batch * units_per_sample;
    StepHealth health(device, tc.skip_nonfinite);
    // A stop asked by a signal (SIGTERM from a scheduler or the launcher, Ctrl-C): marked on the
    // device and averaged with the step's loss inside the node, then acted on at the next read, so
    // every worker of a node stops at the same step, without a host synchronisation in the step.
    torch::Tensor stop = torch::zeros({1}, torch::TensorOptions().device(device));
    bool stop_marked = false;
    // train.profile_steps: after 3 warm-up steps (allocator, cuBLAS heuristics, autotuning), on the
    // node leader of node 0 only, so one trace describes the job.
    const int64_t profile_from = start_step + std::min<int64_t>(3, std::max<int64_t>(0, tc.steps - start_step - tc.profile_steps));
    std::unique_ptr<StepProfiler> profiler;
    if (tc.profile_steps > 0 && node_leader && topo.node == 0)
      profiler = std::make_unique<StepProfiler>(device, profile_from, std::min(tc.profile_steps, tc.steps - profile_from),
                                                my_dir.profile_trace());
    if (node_leader && plan.shares_gpu && topo.node == 0)
      std::printf("train.device: the %lld workers of each node share %s\n", static_cast<long long>(topo.node_size),
                  plan.describe().c_str());

    for (int64_t step = start_step; step < tc.steps; ++step) {
      // ---- the training step: no host synchronisation (the loss and norm stay on the device) ----
      if (profiler) profiler->before_step(step);
      const double lr = lr_at(schedule, step);
      optimizer.set_lr(lr);
      optimizer.zero_grad();
      task->begin_step(step, node_batch);
      torch::Tensor loss_sum = torch::zeros({1}, torch::TensorOptions().device(device));
      for (int64_t micro = 0; micro < tc.grad_accum; ++micro) {
        torch::manual_seed(seed::dropout(static_cast<uint64_t>(tc.seed), topo.node, topo.node_rank * tc.grad_accum + micro, step));
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
      if (!stop_marked && io::stop_requested()) stop.fill_(1.0), stop_marked = true;
      comm.node_mean({loss_sum, stop});  // the node's loss (and stop), so every worker of the node decides alike
      const torch::Tensor norm = tc.grad_clip > 0 ? clip_grad_norm(params, tc.grad_clip) : grad_norm(params);
      // A non-finite loss or gradient norm skips this step's update on the device (AdamW's
      // found_inf); the host learns of it at the next read.
      optimizer.step(health.record(step, loss_sum, norm));
      if (config.dist.sync_every > 0 && (step + 1) % config.dist.sync_every == 0) {
        comm.world_mean(params);                   // local SGD: continue from the nodes' mean
        if (outer) outer->step(optimizer.params());  // DiLoCo: an outer Nesterov step towards it
      }
      // ---- end of the training step ------------------------------------------------------
      if (profiler) {
        profiler->after_step(step);
        if (profiler->done()) {
          const std::string table = format_profile(profiler->summary());
          io::write_file_atomic(my_dir.profile_table(), format_profile(profiler->summary(), /*rows=*/SIZE_MAX));
          std::printf("%s%s  trace: %s\n", tty ? "\n" : "", table.c_str(), my_dir.profile_trace().c_str());
          profiler.reset();
        }
      }

      units_seen += node_batch * units_per_sample;
      const int64_t done = step + 1;
      const bool eval_now = tc.eval_every > 0 && task->has_validation() && done % tc.eval_every == 0;
      const bool ckpt_now = tc.ckpt_every > 0 && done % tc.ckpt_every == 0 && done < tc.steps;
      const bool log_now = done % tc.log_every == 0 || done == tc.steps || eval_now || ckpt_now;
      // Every worker of the node reads at the same steps, so all of them stop together; after
      // the read the clock measures work done, not work queued.
      if (log_now) last_loss = health.read().loss;
      if (log_now && done < tc.steps && stop.item<float>() > 0) {
        if (node_leader) save_checkpoint(my_dir, done, model, optimizer, config_toml, data_prints, outer.get());
        const int sig = io::stop_requested();
        fail("node ", topo.node, " stopped by ", sig ? cat("signal ", sig, " (", ::strsignal(sig), ")") : std::string("a signal to another of its workers"),
             " at step ", done, " of ", tc.steps, "; its checkpoint of step ", done, " is saved: continue with --resume");
      }
      const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      const double rate = static_cast<double>(units_seen - start_step * node_batch * units_per_sample) / std::max(seconds, 1e-9);
      const double eta = seconds / static_cast<double>(done - start_step) * static_cast<double>(tc.steps - done);
      if (log_now) {
        const StepHealth::Reading& r = health.last();
        if (node_leader) report_skips(topo.node, done, r, tc.skip_nonfinite);
        if (r.diverged_at > 0) {
          if (node_leader) metrics->write(step_record(done, r, lr, unit, units_seen, seconds, rate, comm, topo));
          fail("node ", topo.node, " diverged at step ", r.diverged_at, ": loss ", number_text(r.diverged_loss),
               ", gradient norm ", number_text(r.diverged_norm),
               r.skipped > 0 ? cat(" (", r.skipped, " such steps skipped already)") : std::string(),
               "; no final is written. Lower train.lr or raise train.warmup_steps, resume from a checkpoint with --resume, ",
               "or let train.skip_nonfinite = N skip up to N such steps");
        }
      }
      if (!node_leader) continue;
      heartbeat->beat(done);
      if (log_now) {
        nlohmann::json record = step_record(done, health.last(), lr, unit, units_seen, seconds, rate, comm, topo);
        if (device.is_cuda()) record["peak_memory_bytes"] = dist::cuda_peak_allocated(device.index());
        if (eval_now) record.update(task->validate(micro_batch));
        metrics->write(record);
        std::string validation;  // the periodic evaluation's numbers, on the same line
        for (const auto& [key, value] : record.items())
          if (key.rfind("val_", 0) == 0 && value.is_number()) validation += cat(" ", key, " ", format_fixed(value.get<double>(), 4));
        if (!tty)
          std::printf("node %lld step %lld/%lld loss %.4f%s lr %.2e %.0f %s/s ETA %s\n", static_cast<long long>(topo.node),
                      static_cast<long long>(done), static_cast<long long>(tc.steps), last_loss, validation.c_str(), lr, rate,
                      unit.c_str(), format_clock(eta).c_str());
        else if (!validation.empty())
          std::printf("\rnode %lld step %lld/%lld%s\n", static_cast<long long>(topo.node), static_cast<long long>(done),
                      static_cast<long long>(tc.steps), validation.c_str());
      }
      if (tty)  // every step: the loss of the last read, the rate and ETA of now
        std::printf("\rnode %lld step %lld/%lld loss %.4f %.0f %s/s ETA %s   ", static_cast<long long>(topo.node),
                    static_cast<long long>(done), static_cast<long long>(tc.steps), last_loss, rate, unit.c_str(),
                    format_clock(eta).c_str());
      std::fflush(stdout);
      if (ckpt_now) {
        save_checkpoint(my_dir, done, model, optimizer, config_toml, data_prints, outer.get());
        prune_checkpoints(my_dir, tc.keep_checkpoints);
      }
    }
    if (tty) std::printf("\n");

    summary.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    summary.final_loss = last_loss;
    summary.steps_run = tc.steps - start_step;
    summary.bytes_within_node = comm.bytes_within_node();
    summary.bytes_between_nodes = comm.bytes_between_nodes();
    if (node_leader) {
      save_checkpoint(my_dir, tc.steps, model, optimizer, config_toml, data_prints, outer.get());
      prune_checkpoints(my_dir, tc.keep_checkpoints);
      io::Metadata meta = task->metadata();
      meta.insert({{"lofi.node", std::to_string(topo.node)}, {"lofi.nodes", std::to_string(topo.nodes)},
                   {"lofi.step", std::to_string(tc.steps)}, {"lofi.config", config_toml}});
      if (!init_xxh3.empty()) meta["lofi.init_xxh3"] = init_xxh3;
      io::save_safetensors(my_dir.final_weights(), model::module_weights(model), meta);
      heartbeat->done(tc.steps);
    }
  } catch (const std::exception& e) {
    if (heartbeat) heartbeat->failed(e.what());
    throw;
  }
  worker.topo = topo;
  worker.attempt = comm.attempt();
  worker.eval_batch = micro_batch;
  worker.task = std::move(task);
  worker.lock = std::move(lock);
  return worker;
}

}  // namespace lofi::train
