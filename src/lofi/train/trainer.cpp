#include "lofi/train/trainer.h"

#include <ATen/autocast_mode.h>

#include <malloc.h>
#include <sys/resource.h>
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
#include <set>
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
#include "lofi/io/lora_adapter.h"
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
#include "lofi/train/step_graphs.h"
#include "lofi/train/step_health.h"
#include "lofi/train/step_profiler.h"
#include "lofi/run/metrics_record.h"
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

// Whether the nodes meet after step DONE: they average weights every dist.sync_every steps, or
// train as one node through a shared warm start.
bool nodes_meet_after(const Config& config, int64_t done) {
  return config.dist.sync_every > 0 || done < config.dist.warm_start_steps;
}

// The last step at or before DONE at which every node met (0: none): a sync of dist.sync_every,
// or a step of the shared warm start. A node past it has every node's checkpoints before it
// written (prune_checkpoints keeps one of them).
int64_t last_meeting(const Config& config, int64_t done) {
  int64_t met = std::min(done, config.dist.warm_start_steps);
  if (config.dist.sync_every > 0) met = std::max(met, done / config.dist.sync_every * config.dist.sync_every);
  return met;
}

// --resume: the newest checkpoint that verifies or, where the nodes meet after it, the newest step
// of which every node holds one that does (nodes that meet restart from one step). nullopt: the
// node has none (it died before its first), and it starts from step 0, as do nodes that meet and
// hold no step in common. Refused when its config differs in a way that changes the trajectory
// unless ALLOW_CHANGED.
std::optional<run::Checkpoint> resume_point(const Config& config, const run::NodeDir& node, const dist::Topology& topo,
                                            bool verbose, dist::Comm& comm, bool allow_changed,
                                            std::vector<std::string>& changes) {
  ResumeCandidates candidates(node, verbose);
  std::optional<run::Checkpoint> ckpt;
  std::string refused;  // why this node's checkpoints cannot be resumed, told to the others as step -1
  auto newest = [&](int64_t at_most) {
    try {
      ckpt = candidates.newest(at_most);
    } catch (const Error& e) {
      if (!config.dist.sync_every && !config.dist.warm_start_steps) throw;
      refused = e.what(), ckpt.reset();
    }
    return refused.empty() ? (ckpt ? ckpt->step : 0) : -1;
  };
  int64_t mine = newest(INT64_MAX);
  if (config.dist.sync_every > 0 || config.dist.warm_start_steps > 0) {
    int64_t agreed = comm.agree_min("resume-step", mine);
    // Each node proposes its newest good step at or below the last agreement, until all agree.
    for (int round = 1; agreed >= 0 && nodes_meet_after(config, agreed); ++round) {
      const int64_t next = comm.agree_min(cat("resume-step/", round), agreed == 0 ? 0 : newest(agreed));
      if (next == agreed) break;
      agreed = next;
    }
    if (!refused.empty()) fail(refused);
    if (agreed < 0) fail("--resume: another node's checkpoints do not verify (its output says which); start over with --overwrite");
    if (nodes_meet_after(config, agreed) && agreed != mine && agreed > 0 && verbose && topo.node_rank == 0)
      std::printf("resume: node %lld continues from step %lld, the newest step every node holds (nodes that meet restart "
                  "together)\n", static_cast<long long>(topo.node), static_cast<long long>(agreed));
    if (nodes_meet_after(config, agreed) && agreed == 0) ckpt.reset();
  }
  if (!ckpt) {
    if (verbose && topo.node_rank == 0)
      std::printf("resume: node %lld starts from step 0: %s\n", static_cast<long long>(topo.node),
                  candidates.empty() ? "it has no checkpoint (it stopped before its first)"
                                     : "the nodes, which meet during training, hold no checkpoint of one step in common");
    return std::nullopt;
  }
  if (const std::string text = checkpoint_record(*ckpt, "lofi.config"); !text.empty()) {
    Config was;
    apply_toml_text(was, text, ckpt->weights + " (lofi.config)");
    changes = trajectory_changes(was, config);
  } else if (verbose && topo.node_rank == 0) {
    std::printf("resume: %s records no settings (an older checkpoint), so this start's cannot be checked against the ones "
                "it was trained with\n", ckpt->weights.c_str());
  }
  // The data itself: the same paths may hold other tokens now.
  if (const auto was = data::fingerprints_from_json(checkpoint_record(*ckpt, "lofi.data")); !was.empty())
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
  if (std::filesystem::is_directory(init) && io::is_lora_adapter(init))  // a PEFT directory: its weights file
    return io::SafetensorsFile(init + "/adapter_model.safetensors").checksum();
  return io::SafetensorsSet(init).checksum();
}

std::string number_text(double v) {
  if (std::isfinite(v)) return std::to_string(v);
  return std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
}

// The step's metrics record (metrics.jsonl) from a reading of the device-side state.
run::StepMetrics step_record(int64_t done, const StepHealth::Reading& r, double lr, const std::string& unit, int64_t units_seen,
                             double seconds, double rate, const dist::Comm& comm, const dist::Topology& topo) {
  run::StepMetrics m;
  m.step = done, m.loss = r.loss, m.grad_norm = r.grad_norm, m.lr = lr;
  m.unit = unit, m.units_seen = units_seen, m.seconds = seconds, m.units_per_s = rate;
  m.bytes_within_node = comm.bytes_within_node(), m.bytes_between_nodes = comm.bytes_between_nodes();
  m.node_workers = topo.node_size;
  m.skipped_nonfinite = r.skipped, m.diverged_at_step = r.diverged_at;
  return m;
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

// The paper's same-data rule: global batch B over N nodes, B / N per node, split over its workers.
struct Batches {
  int64_t node = 0, rank = 0, micro = 0;  // sequences (or images) per node, per worker, per micro-batch
};

Batches batches_of(const TrainConfig& tc, const dist::Topology& topo) {
  check_node_batch(tc, topo.nodes, topo.node_size);
  const int64_t node_batch = tc.batch_size / topo.nodes;
  const int64_t rank_batch = node_batch / topo.node_size;
  return {node_batch, rank_batch, rank_batch / tc.grad_accum};
}

bool any_checkpoint(const run::RunDir& run) {
  for (int64_t k : run.node_ids())
    if (run.node(k).latest_checkpoint()) return true;
  return false;
}

// The run directory belongs to this run, and a start says what it does with an older one; all
// refused before the rendezvous, so a refusal stops the whole job. Returns the node leader's lock.
std::unique_ptr<run::NodeDirLock> claim_run_dir(const Config& config, const dist::Topology& topo, int64_t rank,
                                                const StartOptions& start) {
  const run::RunDir run_dir(config.run.dir);
  const run::NodeDir my_dir = run_dir.node(topo.node);
  // --resume with another node count: every node's data share would change, and the new nodes
  // have no checkpoint. Said by name before any node directory is made.
  if (start.mode == run::StartMode::resume && topo.whole_job)
    if (const auto was = run_dir.config_value("dist.nodes"); was && !was->empty() && *was != std::to_string(config.dist.nodes))
      fail("--resume: ", config.run.dir, " was trained with dist.nodes = ", *was, ", this start has dist.nodes = ",
           config.dist.nodes, "; a run resumes with its own node count (each node's data and checkpoints depend on it): ",
           "set dist.nodes = ", *was, ", or start another run.dir");
  // A run does not go back: resuming past train.steps would write the later weights as an earlier
  // step's. Refused before the previous attempt's finals are retired.
  if (start.mode == run::StartMode::resume)
    if (const auto latest = my_dir.latest_checkpoint(); latest && latest->step > config.train.steps)
      fail("--resume: ", latest->weights, " is at step ", latest->step, ", past train.steps = ", config.train.steps,
           "; a run resumes forward only: set train.steps >= ", latest->step, ", or start another run.dir");
  // A node that stopped before its first checkpoint starts again from step 0 (resume_point); a
  // run.dir with nothing of an earlier start is likely another than meant.
  if (start.mode == run::StartMode::resume && !my_dir.latest_checkpoint() && !std::filesystem::exists(my_dir.status()) &&
      !std::filesystem::exists(my_dir.metrics()) && !any_checkpoint(run_dir))
    fail("--resume: nothing to resume in ", config.run.dir, ": no node of it has a checkpoint or an earlier start; ",
         "check run.dir, or start without --resume");
  std::unique_ptr<run::NodeDirLock> lock;
  if (topo.node_rank == 0) {
    lock = std::make_unique<run::NodeDirLock>(my_dir);
    run::prepare_node_dir(my_dir, start.mode);
  }
  if (topo.whole_job && rank == 0) run::prepare_run_root(run_dir, start.mode, topo.nodes);
  return lock;
}

// Whether the start's weights come from model.init, to be refused if not finite.
bool checks_init(const Config& config, const StartOptions& start) {
  return !config.model.init.empty() && start.mode != run::StartMode::resume;
}
const char* const kNonfiniteInit = "the weights of a diverged run cannot be fine-tuned; give another model.init";

// A parameter of a sharded start that has no memory yet: on the host, its start value (checked
// finite where it comes from model.init).
void fill_deferred(model::DeferredWeights& deferred, const std::string& name, const torch::Tensor& param, const Config& config,
                   const StartOptions& start) {
  deferred.fill(name, param);
  if (checks_init(config, start))
    merge::refuse_nonfinite_weights({{name, param.detach()}}, "model.init " + config.model.init, kNonfiniteInit);
}

// The task, on DEVICE (or, where ON_HOST, left where it is built, for a sharded start: see
// move_all_but). Every node starts from the same weights: the init depends on the seed alone.
std::unique_ptr<Task> start_task(const Config& config, const dist::Topology& topo, const TaskFactory& make_task,
                                 const StartOptions& start, const torch::Device& device, bool on_host) {
  std::unique_ptr<Task> task = make_task(config, topo, seed::init(static_cast<uint64_t>(config.train.seed)));
  // A pretrained start holding NaN or Inf would only surface as a "divergence" at step 1 (the
  // parameters a sharded start defers are checked as they are filled: fill_deferred).
  if (checks_init(config, start)) {
    io::NamedTensors made;
    for (auto& [name, t] : model::module_weights(task->model()))
      if (!t.is_meta()) made.emplace_back(name, t);
    merge::refuse_nonfinite_weights(made, "model.init " + config.model.init, kNonfiniteInit);
  }
  if (!on_host) task->model().to(device);
  task->set_device(device);
  return task;
}

// A fully sharded node's start: every parameter and buffer of MODULE but KEPT (the decoder blocks'
// parameters) to DEVICE; the blocks' reach it as this worker's parts (GradientSync::shard_params),
// one block whole at a time, so the device never holds the whole model.
void move_all_but(torch::nn::Module& module, const std::set<const c10::TensorImpl*>& kept, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (!kept.count(p.unsafeGetTensorImpl())) p.set_data(p.to(device));
  for (auto& b : module.buffers()) b.set_data(b.to(device));
}

dist::CommOptions comm_options(const Config& config, const dist::DevicePlan& plan, const run::NodeDir& node) {
  dist::CommOptions o;
  o.timeout_s = config.dist.timeout_s;
  o.world_group = config.dist.sync_every > 0 || config.dist.warm_start_steps > 0;
  o.apart_from_step = config.dist.sync_every > 0 ? -1 : config.dist.warm_start_steps;
  o.device = plan.device;
  o.node_backend = plan.node_backend;
  o.bind = config.dist.bind;
  o.node_dir = node.path();
  o.settings = to_toml(config);
  return o;
}

// What the steps need that setup made: the worker's place, its task, optimizers and collectives.
struct StepContext {
  const Config& config;
  const dist::Topology& topo;
  Batches batches;
  torch::Device device;
  Task& task;
  Optimizer& optimizer;
  OuterOptimizer* outer;  // DiLoCo's, or none
  dist::Comm& comm;
  dist::GradientSync& grad_sync;
  std::unique_ptr<dist::GradientSync> warm_sync;  // the job's, for a shared warm start's steps
  run::NodeDir dir;       // this node's
  int64_t start_step = 0;
  io::Metadata records;  // what checkpoints record of the run (save_checkpoint)
  MetricsLog* metrics = nullptr;          // the node leader's
  dist::NodeHeartbeat* heartbeat = nullptr;
  int64_t start_peak = 0;  // this worker's memory peak when its start ended: the caching allocator's on a GPU, else resident
};

// One worker's steps: the training step, the reads of its device-side state every log_every
// steps (stop requests, divergence), and the node leader's reports and checkpoints.
class TrainingLoop {
 public:
  explicit TrainingLoop(StepContext c);
  // Runs the steps left; the node leader then saves the last checkpoint. Fills S's times and bytes.
  void run(TrainSummary& s);

 private:
  void train_step(int64_t step, double lr);
  // One micro-batch's forward (TASK_LOSS) and backward, its loss added to loss_sum_.
  void micro_pass(dist::GradientSync& sync, bool last, const std::function<torch::Tensor()>& task_loss);
  // After the micro-batches: the gradient norm (clipped), the finite check, and AdamW's update.
  void clip_and_update();
  void after_profiled_step(int64_t step);
  // A read of the device-side state: the loss, and a stop asked by a signal (checkpointed first).
  void read(int64_t done);
  // After a read: a diverged run stops, naming the step it began at.
  void check_divergence(int64_t done, double lr, double seconds, double rate);
  // The node leader's metrics record and progress line.
  // VALIDATION: the periodic evaluation's numbers, when it ran at this step.
  void report(int64_t done, bool log_now, const std::map<std::string, double>& validation, double lr, double seconds,
              double rate, double eta);
  void save(int64_t done);
  run::StepMetrics record(int64_t done, double lr, double seconds, double rate) const {
    return step_record(done, health_.last(), lr, c_.task.unit(), units_seen_, seconds, rate, c_.comm, c_.topo);
  }

  StepContext c_;
  const TrainConfig& tc_;
  const bool leader_;  // of the node
  const bool tty_;
  std::vector<torch::Tensor> params_;
  dist::GradientSync& grad_sync_;
  const Schedule schedule_;
  StepHealth health_;
  // A stop asked by a signal (SIGTERM from a scheduler or the launcher, Ctrl-C): marked on the
  // device and averaged with the step's loss inside the node, then acted on at the next read, so
  // every worker of a node stops at the same step, without a host synchronisation in the step.
  torch::Tensor stop_;
  bool stop_marked_ = false;
  std::unique_ptr<StepProfiler> profiler_;
  torch::Tensor loss_sum_;  // (1) the step's loss over its micro-batches
  std::unique_ptr<StepGraphs> graphs_;  // train.cuda_graphs
  int64_t units_seen_ = 0;
  double last_loss_ = 0;
};

TrainingLoop::TrainingLoop(StepContext c)
    : c_(std::move(c)),
      tc_(c_.config.train),
      leader_(c_.topo.node_rank == 0),
      tty_(leader_ && ::isatty(STDOUT_FILENO)),
      grad_sync_(c_.grad_sync),
      schedule_{tc_.lr, tc_.min_lr, tc_.warmup_steps, tc_.steps},
      health_(c_.device, tc_.skip_nonfinite),
      stop_(torch::zeros({1}, torch::TensorOptions().device(c_.device))),
      loss_sum_(torch::zeros({1}, torch::TensorOptions().device(c_.device))),
      units_seen_(c_.start_step * c_.batches.node * c_.task.units_per_sample()) {
  for (const auto& p : c_.optimizer.params()) params_.push_back(p.param);
  if (tc_.cuda_graphs) {
    c_.optimizer.hold_for_graphs();
    graphs_ = std::make_unique<StepGraphs>(c_.device, [this] {
      std::vector<const void*> at;
      for (const auto& t : c_.task.staged()) at.push_back(t.defined() ? t.data_ptr() : nullptr);
      for (const auto& p : params_) at.push_back(p.grad().defined() ? p.grad().data_ptr() : nullptr);
      at.push_back(loss_sum_.data_ptr());
      at.push_back(health_.device_state().data_ptr());
      return at;
    });
    const int64_t first = std::max(c_.start_step, c_.config.dist.warm_start_steps);
    if (leader_ && c_.topo.node == 0 && cuda_graphs_eager())
      std::printf("train.cuda_graphs: LOFI_CUDA_GRAPHS_EAGER is set: the step is staged for CUDA graphs and runs as it is, "
                  "nothing recorded\n");
    else if (leader_ && c_.topo.node == 0 && first + 1 < tc_.steps)
      std::printf("train.cuda_graphs: step %lld warms up, step %lld records the step's kernels as CUDA graphs, the steps after "
                  "replay them\n", static_cast<long long>(first + 1), static_cast<long long>(first + 2));
  }
  // train.profile_steps: after 3 warm-up steps (allocator, cuBLAS heuristics, autotuning), on the
  // node leader of node 0 only, so one trace describes the job.
  const int64_t start_step = c_.start_step;
  const int64_t profile_from = start_step + std::min<int64_t>(3, std::max<int64_t>(0, tc_.steps - start_step - tc_.profile_steps));
  if (tc_.profile_steps > 0 && leader_ && c_.topo.node == 0)
    profiler_ = std::make_unique<StepProfiler>(c_.device, profile_from, std::min(tc_.profile_steps, tc_.steps - profile_from),
                                               c_.dir.profile_trace());
}

// This process's peak resident memory so far (Linux reports kilobytes).
int64_t peak_resident_bytes() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

// The training step: no host synchronisation (the loss and norm stay on the device). With
// train.cuda_graphs its GPU work is replayed from graphs (step_graphs.h): the host's numbers go to
// the device first (lr, step, seed, batch), and the two pieces read them there.
void TrainingLoop::train_step(int64_t step, double lr) {
  const Batches& b = c_.batches;
  // A shared warm start: every worker of the job as one data-parallel node, each node on its data.
  const bool warm = step < c_.config.dist.warm_start_steps;
  if (!warm) c_.warm_sync.reset();  // its buckets go
  dist::GradientSync& sync = warm ? *c_.warm_sync : grad_sync_;
  StepGraphs* graphs = warm ? nullptr : graphs_.get();  // a warm start's steps all-reduce over the job: run as they are
  c_.optimizer.set_lr(lr);
  c_.optimizer.zero_grad();
  c_.task.begin_step(step, b.node);
  loss_sum_.zero_();
  health_.set_step(step);
  for (int64_t micro = 0; micro < tc_.grad_accum; ++micro) {
    torch::manual_seed(seed::dropout(static_cast<uint64_t>(tc_.seed), c_.topo.node, c_.topo.node_rank * tc_.grad_accum + micro, step));
    const int64_t first = c_.topo.node_rank * b.rank + micro * b.micro;
    const bool last = micro == tc_.grad_accum - 1;
    if (!graphs) {
      micro_pass(sync, last, [&] { return c_.task.loss(first, b.micro); });
      continue;
    }
    // One recording serves every micro-batch, whatever LAST says: in a node of one worker (what
    // cuda_graphs_refusal allows) the gradient sync does no device work either way.
    c_.task.stage(first, b.micro);
    graphs->micro([&] { micro_pass(sync, last, [&] { return c_.task.staged_loss(); }); });
  }
  if (!stop_marked_ && io::stop_requested()) stop_.fill_(1.0), stop_marked_ = true;
  // The node's loss (and stop), so every worker of the node decides alike; while warm, the job's.
  if (warm) c_.comm.world_mean({loss_sum_, stop_});
  else c_.comm.node_mean({loss_sum_, stop_});
  if (graphs) graphs->finish([&] { clip_and_update(); });
  else clip_and_update();
  if (c_.optimizer.sharded()) grad_sync_.gather_params();  // every worker's updated pieces, into every replica
  if (c_.config.dist.sync_every > 0 && (step + 1) % c_.config.dist.sync_every == 0) {
    c_.comm.world_mean(params_);                     // local SGD: continue from the nodes' mean
    if (c_.outer) {
      c_.outer->step(c_.optimizer.params());  // DiLoCo: an outer Nesterov step towards it
      // Its weights are measured by no loss before the next steps (and by none at all after the
      // run's last one): checked here, where the sync has just waited on the host anyway.
      std::vector<torch::Tensor> finite;
      for (const auto& p : c_.optimizer.params()) finite.push_back(torch::isfinite(p.param).all());
      bool usable = torch::stack(finite).all().item<bool>();
      // The run's last step: no later step's loss reads these weights, so this batch is read
      // again through them (finite weights can still overflow in the activations).
      if (usable && step + 1 == tc_.steps) {
        torch::NoGradGuard no_grad;
        dist::PrecisionGuard precision(c_.device, tc_.precision);
        usable = torch::isfinite(c_.task.loss(c_.topo.node_rank * b.rank, b.micro)).all().item<bool>();
      }
      if (!usable)
        fail("node ", c_.topo.node, ": DiLoCo's outer step at step ", step + 1, " made the weights unusable (non-finite weights ",
             "or loss; dist.outer_lr = ", c_.config.dist.outer_lr, ", dist.outer_momentum = ", c_.config.dist.outer_momentum,
             "); lower dist.outer_lr; no final is written");
    }
  }
}

void TrainingLoop::micro_pass(dist::GradientSync& sync, bool last, const std::function<torch::Tensor()>& task_loss) {
  torch::Tensor loss;
  {
    dist::PrecisionGuard precision(c_.device, tc_.precision);  // bf16 forward, fp32 backward into fp32 weights
    loss = task_loss() / static_cast<double>(tc_.grad_accum);
  }
  sync.before_backward(last);
  loss.backward();
  sync.after_backward(last);  // gradients averaged inside this node only (or the job, warm)
  loss_sum_ += loss.detach();
}

void TrainingLoop::clip_and_update() {
  // ZeRO-2 and -3: each worker holds its part of the gradients; their norm is summed over the node.
  const bool parts_only = grad_sync_.holds_parts();
  const std::vector<torch::Tensor> piece_grads = c_.optimizer.sharded() ? grad_sync_.piece_grads() : std::vector<torch::Tensor>{};
  const torch::Tensor norm = parts_only          ? clip_sharded_grad_norm(piece_grads, c_.comm, tc_.grad_clip)
                             : tc_.grad_clip > 0 ? clip_grad_norm(params_, tc_.grad_clip)
                                                 : grad_norm(params_);
  // A non-finite loss or gradient norm skips this step's update on the device (AdamW's
  // found_inf); the host learns of it at the next read.
  c_.optimizer.step(health_.record(loss_sum_, norm), piece_grads);
}

void TrainingLoop::after_profiled_step(int64_t step) {
  if (!profiler_) return;
  profiler_->after_step(step);
  if (!profiler_->done()) return;
  const std::string table = format_profile(profiler_->summary());
  io::write_file_atomic(c_.dir.profile_table(), format_profile(profiler_->summary(), /*rows=*/SIZE_MAX));
  std::printf("%s%s  trace: %s\n", tty_ ? "\n" : "", table.c_str(), c_.dir.profile_trace().c_str());
  profiler_.reset();
}

void TrainingLoop::read(int64_t done) {
  last_loss_ = health_.read().loss;
  if (done == tc_.steps || stop_.item<float>() == 0) return;
  save(done);
  if (c_.heartbeat) c_.heartbeat->beat(done);  // the failed status names the step stopped at
  const int sig = io::stop_requested();
  fail("node ", c_.topo.node, " stopped by ", sig ? cat("signal ", sig, " (", ::strsignal(sig), ")") : std::string("a signal to another of its workers"),
       " at step ", done, " of ", tc_.steps, "; its checkpoint of step ", done, " is saved: continue with --resume");
}

void TrainingLoop::check_divergence(int64_t done, double lr, double seconds, double rate) {
  const StepHealth::Reading& r = health_.last();
  if (leader_) report_skips(c_.topo.node, done, r, tc_.skip_nonfinite);
  if (r.diverged_at == 0) return;
  if (leader_) c_.metrics->write(record(done, lr, seconds, rate).to_json());
  fail("node ", c_.topo.node, " diverged at step ", r.diverged_at, ": loss ", number_text(r.diverged_loss),
       ", gradient norm ", number_text(r.diverged_norm),
       r.skipped > 0 ? cat(" (", r.skipped, " such steps skipped already)") : std::string(),
       "; no final is written. Lower train.lr", c_.outer ? " (or dist.outer_lr, DiLoCo's outer step)" : "",
       " or raise train.warmup_steps, resume from a checkpoint with --resume, or let train.skip_nonfinite = N skip up to N such steps");
}

void TrainingLoop::report(int64_t done, bool log_now, const std::map<std::string, double>& validation_metrics, double lr,
                          double seconds, double rate, double eta) {
  const long long node = c_.topo.node, steps = tc_.steps;
  const std::string& unit = c_.task.unit();
  if (log_now) {
    run::StepMetrics m = record(done, lr, seconds, rate);
    if (c_.device.is_cuda()) m.peak_memory_bytes = dist::cuda_peak_allocated(c_.device.index()), m.start_peak_memory_bytes = c_.start_peak;
    else m.peak_rss_bytes = peak_resident_bytes(), m.start_peak_rss_bytes = c_.start_peak;
    m.optimizer_state_bytes = c_.optimizer.state_bytes();
    m.gradient_bytes = grad_sync_.gradient_bytes();
    m.parameter_bytes = grad_sync_.parameter_bytes() + c_.optimizer.master_bytes();
    m.validation = validation_metrics;
    c_.metrics->write(m.to_json());
    std::string validation;  // the periodic evaluation's numbers, on the same line
    for (const auto& [key, value] : m.validation) validation += cat(" ", key, " ", format_fixed(value, 4));
    if (!tty_)
      std::printf("node %lld step %lld/%lld loss %.4f%s lr %.2e %.0f %s/s ETA %s\n", node, static_cast<long long>(done), steps,
                  last_loss_, validation.c_str(), lr, rate, unit.c_str(), format_clock(eta).c_str());
    else if (!validation.empty())
      std::printf("\rnode %lld step %lld/%lld%s\n", node, static_cast<long long>(done), steps, validation.c_str());
  }
  if (tty_)  // every step: the loss of the last read, the rate and ETA of now
    std::printf("\rnode %lld step %lld/%lld loss %.4f %.0f %s/s ETA %s   ", node, static_cast<long long>(done), steps, last_loss_,
                rate, unit.c_str(), format_clock(eta).c_str());
  std::fflush(stdout);
}

// Every worker calls it at the same steps: where the node shards its optimizer, each worker saves
// its own pieces' state; where it shards its parameters (or their fp32 masters), the weights are
// gathered for the node leader's weights file.
void TrainingLoop::save(int64_t done) {
  const bool sharded = c_.optimizer.sharded();
  OptimizerState state;
  if (sharded) save_optimizer_shard(c_.dir, done, c_.optimizer, leader_ ? c_.outer : nullptr, c_.comm);
  else if (leader_) state.tensors = c_.optimizer.state(state.metadata);
  save_checkpoint(c_.dir, done, NodeWeights{c_.task.model(), c_.optimizer, grad_sync_, leader_}, std::move(state), c_.records,
                  sharded ? nullptr : c_.outer, sharded ? c_.topo.node_size : 0);
}

void TrainingLoop::run(TrainSummary& summary) {
  const int64_t start_step = c_.start_step, node_units = c_.batches.node * c_.task.units_per_sample();
  const auto t0 = Clock::now();
  for (int64_t step = start_step; step < tc_.steps; ++step) {
    if (profiler_) profiler_->before_step(step);
    const double lr = lr_at(schedule_, step);
    train_step(step, lr);
    after_profiled_step(step);

    units_seen_ += node_units;
    const int64_t done = step + 1;
    const bool eval_now = tc_.eval_every > 0 && c_.task.has_validation() && done % tc_.eval_every == 0;
    // The end of a shared warm start is checkpointed: the state every node leaves from.
    const bool ckpt_now = ((tc_.ckpt_every > 0 && done % tc_.ckpt_every == 0) || done == c_.config.dist.warm_start_steps) &&
                          done < tc_.steps;
    const bool log_now = done % tc_.log_every == 0 || done == tc_.steps || eval_now || ckpt_now;
    // Every worker of the node reads at the same steps, so all of them stop together; after the
    // read the clock measures work done, not work queued.
    if (log_now) read(done);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const double rate = static_cast<double>(units_seen_ - start_step * node_units) / std::max(seconds, 1e-9);
    const double eta = seconds / static_cast<double>(done - start_step) * static_cast<double>(tc_.steps - done);
    if (log_now) check_divergence(done, lr, seconds, rate);
    // The node leader evaluates; where the node shards its parameters every worker runs the same
    // evaluation, since each block's forward gathers it from all of them.
    std::map<std::string, double> validation;
    if (eval_now && (leader_ || grad_sync_.shards_params()))
      validation = c_.task.validate(c_.batches.micro).get<std::map<std::string, double>>();
    if (leader_) report(done, log_now, validation, lr, seconds, rate, eta);
    if (ckpt_now) {
      save(done);
      if (leader_) prune_checkpoints(c_.dir, tc_.keep_checkpoints, last_meeting(c_.config, done));
    }
    // The status's step is one whose checkpoint, where it has one, is written. The split of a
    // shared warm start is said at once: from there the launcher lets a failed node fail alone,
    // and the node's checkpoint of the split is on disk.
    if (leader_) c_.heartbeat->beat(done, /*now=*/done == c_.config.dist.warm_start_steps);
  }
  if (tty_) std::printf("\n");
  // The last step's loss is of the weights the run ends with: a skipped (non-finite) last step
  // means they give no usable loss, so they are no final to write or merge.
  if (!std::isfinite(last_loss_))
    fail("node ", c_.topo.node, " ended on a skipped step: the loss of step ", tc_.steps, " is ", number_text(last_loss_), " (",
         health_.last().skipped, " non-finite steps skipped in all), so its weights are no usable final and none is written. ",
         "Lower train.lr or raise train.warmup_steps, or resume from an earlier checkpoint with --resume");
  summary.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  summary.final_loss = last_loss_;
  summary.steps_run = tc_.steps - start_step;
  summary.bytes_within_node = c_.comm.bytes_within_node();
  summary.bytes_between_nodes = c_.comm.bytes_between_nodes();
  save(tc_.steps);
  if (leader_) prune_checkpoints(c_.dir, tc_.keep_checkpoints, last_meeting(c_.config, tc_.steps));
}

}  // namespace

void check_node_batch(const TrainConfig& tc, int64_t nodes, int64_t node_workers) {
  const int64_t node_batch = tc.batch_size / nodes;
  if (node_batch % (node_workers * tc.grad_accum) != 0)
    fail("config: the node batch (train.batch_size / dist.nodes = ", node_batch, ") must be divisible by ",
         node_workers, " workers x train.grad_accum = ", tc.grad_accum);
}

TrainedWorker run_training(const Config& config, const dist::WorkerEnv& env, const TaskFactory& make_task,
                           const StartOptions& start) {
  const auto& tc = config.train;
  check_training_data(config);
  const dist::Topology topo = dist::make_topology(env, config.dist.nodes, config.dist.node_id);
  const Batches batches = batches_of(tc, topo);
  torch::set_num_threads(tc.threads > 0 ? static_cast<int>(tc.threads) : dist::default_threads(env));
  const dist::BuildInfo build = dist::build_info();
  const dist::DevicePlan plan = dist::plan_device(tc.device, env.local_rank, env.local_world_size, topo.node_rank,
                                                  topo.node_size, build.gpus, build.cuda_compiled, "train.device");
  dist::check_precision(tc.precision, plan.device, "train.precision");
  dist::use_device(plan.device);
  std::unique_ptr<run::NodeDirLock> lock = claim_run_dir(config, topo, env.rank, start);
  const run::RunDir run_dir(config.run.dir);
  const run::NodeDir my_dir = run_dir.node(topo.node);
  const bool node_leader = topo.node_rank == 0;

  // dist.shard = "full" (but LP-FT, which runs the whole model first): the model stays on the host
  // where it is built, and its decoder blocks reach the device as this worker's parts.
  const bool sharded_start = starts_sharded(config, topo);
  // A node resumed with no checkpoint starts from model.init, checked as at a fresh start.
  StartOptions from = start;
  if (start.mode == run::StartMode::resume && !my_dir.latest_checkpoint()) from.mode = run::StartMode::fresh;
  std::unique_ptr<Task> task = start_task(config, topo, make_task, from, plan.device, sharded_start);
  if (const std::string refused = cuda_graphs_refusal(config, topo, plan.device, *task); !refused.empty()) fail(refused);
  // Built in pieces: the decoder blocks' parameters have no memory until shard_params fills them.
  model::DeferredWeights* deferred = task->deferred_weights();
  dist::Comm comm(env, topo, comm_options(config, plan, my_dir));
  // --resume: where this node continues from (none: from step 0).
  std::vector<std::string> changes;
  const std::optional<run::Checkpoint> resume_from =
      start.mode == run::StartMode::resume ? resume_point(config, my_dir, topo, node_leader, comm, start.allow_changed, changes)
                                           : std::nullopt;
  if (start.mode == run::StartMode::resume && node_leader) run::retire_checkpoints_after(my_dir, resume_from ? resume_from->step : 0);
  task->model().train();
  Optimizer optimizer(task->model(), tc);
  // LP-FT: the new head fitted on frozen features before fine-tuning's first step, with the global
  // batch on every worker whatever the topology (a resumed run has its head in the checkpoint).
  if (tc.head_init == "lp" && !resume_from) {
    const std::string done = task->probe_head(tc.lp_steps, tc.lp_lr, tc.batch_size);
    if (node_leader && topo.node == 0) std::printf("%s\n", done.c_str());
  }
  // The node's gradient collectives; sharded (dist.shard), each worker updates its pieces alone.
  dist::ShardMode shard = dist::shard_mode(config.dist.shard);
  if (shard != dist::ShardMode::none && topo.node_size == 1) {
    if (node_leader && topo.node == 0)
      std::printf("dist.shard = \"%s\" does nothing in a node of one worker: it holds everything\n", config.dist.shard.c_str());
    shard = dist::ShardMode::none;
  }
  std::vector<torch::Tensor> params;
  std::vector<std::string> names;
  for (const auto& p : optimizer.params()) params.push_back(p.param), names.push_back(p.name);
  std::vector<int64_t> blocks;  // dist.shard = "full": each parameter's decoder block (-1: outside them)
  if (shard == dist::ShardMode::full) {
    blocks = task->blocks_of(params);
    if (std::none_of(blocks.begin(), blocks.end(), [](int64_t b) { return b >= 0; }))
      fail("dist.shard = \"full\": this model has no decoder blocks to gather one at a time; use dist.shard = \"gradients\"");
  }
  if (sharded_start) {
    std::set<const c10::TensorImpl*> in_blocks;
    for (size_t k = 0; k < params.size(); ++k)
      if (blocks.at(k) >= 0) in_blocks.insert(params[k].unsafeGetTensorImpl());
    // The parameters outside the blocks are held whole: given their values now.
    if (deferred)
      for (auto& item : task->model().named_parameters())
        if (deferred->deferred(item.key()) && !in_blocks.count(item.value().unsafeGetTensorImpl()))
          fill_deferred(*deferred, item.key(), item.value(), config, from);
    move_all_but(task->model(), in_blocks, plan.device);
  }
  dist::GradientSync::Options sync_options;
  sync_options.overlap = config.dist.overlap, sync_options.bucket_mb = config.dist.bucket_mb;
  sync_options.reduce_dtype = config.dist.reduce_dtype == "bf16" ? torch::kBFloat16 : torch::kFloat;
  const torch::Dtype param_dtype = tc.param_dtype == "bf16" ? torch::kBFloat16 : torch::kFloat;
  dist::GradientSync::Options node_options = sync_options;
  node_options.mode = shard, node_options.units = blocks, node_options.param_dtype = param_dtype;
  dist::GradientSync grad_sync(comm, params, names, node_options);
  if (shard != dist::ShardMode::none) {
    optimizer.shard(grad_sync.pieces(), grad_sync.block_parts());
    if (node_leader && topo.node == 0) {
      int64_t total = 0;
      for (const auto& p : params) total += p.numel();
      std::printf("dist.shard = \"%s\": each of a node's %lld workers updates %lld of the %lld trainable parameters and keeps "
                  "their AdamW state%s%s\n", config.dist.shard.c_str(), static_cast<long long>(topo.node_size),
                  static_cast<long long>(grad_sync.layout().owned_numel()), static_cast<long long>(total),
                  shard == dist::ShardMode::gradients ? " and gradients"
                  : shard == dist::ShardMode::full    ? ", gradients and part of each block's parameters"
                                                      : "",
                  deferred ? " (made one block at a time: no worker holds the whole model, from the start)" : "");
    }
  }
  // DiLoCo's outer optimizer, from the weights every node starts from (or its checkpointed state).
  std::unique_ptr<OuterOptimizer> outer;
  if (config.dist.outer_optimizer == "nesterov")
    outer = std::make_unique<OuterOptimizer>(optimizer.params(), config.dist.outer_lr, config.dist.outer_momentum);
  int64_t start_step = 0;
  if (resume_from)
    start_step = load_checkpoint(*resume_from, task->model(), optimizer, outer.get(), deferred);
  // dist.shard = "full": from here on each decoder block's parameters are whole only while it runs;
  // built in pieces, each block is filled on the host as it is packed, one at a time.
  if (deferred) {
    grad_sync.shard_params([&](const std::string& name, const torch::Tensor& p) { fill_deferred(*deferred, name, p, config, from); });
    deferred->done();
  } else {
    grad_sync.shard_params();
  }
#if defined(__GLIBC__)
  // A sharded start let go of each block on the host once packed (filled first, where built in
  // pieces): glibc's heap would keep those freed blocks resident through training.
  if (sharded_start) malloc_trim(0);
#endif
  // train.param_dtype = "bf16": the weights compute in bf16 from here on, their fp32 masters in the optimizer.
  if (param_dtype != torch::kFloat) optimizer.compute_in(param_dtype);
  struct BlockHooksOff {  // the hooks refer to grad_sync: they go before it does
    Task& task;
    ~BlockHooksOff() { task.set_block_hooks({}); }
  } hooks_off{*task};
  if (shard == dist::ShardMode::full) {
    task->set_block_hooks({[&grad_sync](int64_t i) { grad_sync.before_block(i); },
                           [&grad_sync](int64_t i, const torch::Tensor& out) { return grad_sync.after_block(i, out); }});
    // Autocast's cache would keep a bf16 copy of every block's weights for the whole forward.
    at::autocast::set_autocast_cache_enabled(false);
  }
  // The whole job's config sits at the run root; a node_id job keeps its own beside its files.
  if (topo.whole_job && env.rank == 0) write_run_config(run_dir.config(), config, start, start_step, changes);
  if (!topo.whole_job && node_leader) write_run_config(my_dir.config(), config, start, start_step, changes);
  std::unique_ptr<dist::GradientSync> warm_sync;
  if (config.dist.warm_start_steps > start_step) {
    dist::GradientSync::Options world_options = sync_options;
    world_options.world = true;
    warm_sync = std::make_unique<dist::GradientSync>(comm, params, names, world_options);
    if (env.rank == 0)
      std::printf("dist.warm_start_steps = %lld: the %lld nodes train as one data-parallel node of %lld workers until step %lld, "
                  "then split\n", static_cast<long long>(config.dist.warm_start_steps), static_cast<long long>(topo.nodes),
                  static_cast<long long>(env.world_size), static_cast<long long>(config.dist.warm_start_steps));
  }
  if (node_leader && plan.shares_gpu && topo.node == 0)
    std::printf("train.device: the %lld workers of each node share %s\n", static_cast<long long>(topo.node_size),
                plan.describe().c_str());

  // What the checkpoints record of the data, so --resume can tell when it changed.
  const std::string data_prints = data::fingerprints_json(data::fingerprint_files(data::split_paths(config.data.train)));
  std::unique_ptr<MetricsLog> metrics;
  std::unique_ptr<dist::NodeHeartbeat> heartbeat;
  if (node_leader) {
    metrics = std::make_unique<MetricsLog>(my_dir, start_step, tc.tensorboard);
    heartbeat = std::make_unique<dist::NodeHeartbeat>(my_dir.path(), comm.attempt(), start_step, tc.steps);
  }
  // The start the run was fine-tuned from: a resumed run's checkpoint says (model.init may name
  // another file now, and hashing a large one again costs a read of it).
  std::string init_xxh3;
  if (node_leader) init_xxh3 = resume_from ? checkpoint_record(*resume_from, "lofi.init_xxh3") : "";
  if (node_leader && init_xxh3.empty()) init_xxh3 = init_checksum(config.model.init);
  const std::string config_toml = to_toml(config);  // what the checkpoints and the final record
  io::Metadata records{{"lofi.config", config_toml}, {"lofi.data", data_prints}};
  if (!init_xxh3.empty()) records["lofi.init_xxh3"] = init_xxh3;
  TrainedWorker worker;
  worker.summary.node = topo.node;
  worker.summary.steps = tc.steps;
  try {
    const int64_t start_peak = plan.device.is_cuda() ? dist::cuda_peak_allocated(plan.device.index()) : peak_resident_bytes();
    TrainingLoop loop(StepContext{config, topo, batches, plan.device, *task, optimizer, outer.get(), comm, grad_sync, std::move(warm_sync), my_dir, start_step,
                                  records, metrics.get(), heartbeat.get(), start_peak});
    loop.run(worker.summary);
    // bf16 weights of an unsharded node: its fp32 masters from here on.
    const bool gathered = gathers_weights(optimizer, grad_sync);
    if (!gathered && optimizer.keeps_masters()) optimizer.release_into_params();
    task->set_block_hooks({});
    io::Metadata meta;
    if (node_leader) {
      meta = task->metadata();
      meta.insert({{"lofi.node", std::to_string(topo.node)}, {"lofi.nodes", std::to_string(topo.nodes)},
                   {"lofi.step", std::to_string(tc.steps)}, {"lofi.config", config_toml}});
      if (!init_xxh3.empty()) meta["lofi.init_xxh3"] = init_xxh3;
    }
    NodeWeights{task->model(), optimizer, grad_sync, node_leader}.write(my_dir.final_weights(), meta, /*checksum=*/true);
    if (gathered) {
      // The node's final went to disk bucket by bucket: no worker holds its weights whole, and
      // what needs them after training loads them from there (train/job_end.h).
      optimizer.release();
      grad_sync.finish();
      worker.weights_on_disk = true;
    }
    if (node_leader) heartbeat->done(tc.steps);
  } catch (const std::exception& e) {
    if (heartbeat) heartbeat->failed(e.what());
    throw;
  }
  worker.topo = topo;
  worker.attempt = comm.attempt();
  worker.eval_batch = batches.micro;
  worker.device = plan.device;
  worker.task = std::move(task);
  worker.lock = std::move(lock);
  return worker;
}

}  // namespace lofi::train
