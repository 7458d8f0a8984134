// The training of one worker: places itself among nodes, trains its node's replica (all-reducing
// gradients inside the node only), writes metrics, checkpoints and the node's final weights, and
// returns. What follows, the end of the job (the merge of the node finals, the Hugging Face
// export), is train/job_end.h. A non-finite loss or gradient norm stops the node.
#pragma once
#include <string>

#include "lofi/dist/env.h"
#include "lofi/run/run_dir.h"
#include "lofi/train/config.h"
#include "lofi/train/task.h"

namespace lofi::train {

struct TrainSummary {
  int64_t node = 0;
  int64_t steps = 0;
  double seconds = 0;
  int64_t steps_run = 0;  // by this start (0: a resumed run that had none left)
  double final_loss = 0;  // of the last step this start ran; meaningless when steps_run is 0
  int64_t bytes_within_node = 0;
  int64_t bytes_between_nodes = 0;
};

struct StartOptions {
  run::StartMode mode = run::StartMode::fresh;  // resume: from the newest checkpoint that verifies
  bool allow_changed = false;         // resume with settings that change the trajectory (--resume-changed)
};

// A worker whose training is done: what the end of the job (train/job_end.h) needs of it.
struct TrainedWorker {
  TrainSummary summary;
  dist::Topology topo;
  std::string attempt;         // this job start's id (dist::Comm::attempt())
  int64_t eval_batch = 0;      // the evaluation batch the task validates with
  std::unique_ptr<Task> task;  // its model holds the node's final, which is on disk
  // The node gathered its final from the workers' pieces (train::gathers_weights): the model's
  // trained parameters hold no storage (their shapes alone) until given it on DEVICE.
  bool weights_on_disk = false;
  torch::Device device = torch::kCPU;
  std::unique_ptr<run::NodeDirLock> lock;  // a node leader's, held to the end of the job
};

// Trains this worker's part of the job with the task MAKE_TASK builds (a model family's).
// The paper's same-data rule: the global batch over NODES nodes, each node's share split over its
// NODE_WORKERS workers and train.grad_accum micro-batches; refused, naming the keys, where it does not divide.
void check_node_batch(const TrainConfig& train, int64_t nodes, int64_t node_workers);

TrainedWorker run_training(const Config& config, const dist::WorkerEnv& env, const TaskFactory& make_task,
                           const StartOptions& start = {});

}  // namespace lofi::train
