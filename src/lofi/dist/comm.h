// The worker's collectives, through PyTorch's c10d: a TCPStore for rendezvous and one process
// group per node (behind a PrefixStore "node-k"): NCCL when the workers compute on CUDA with a
// GPU each, Gloo on CPU and where workers of a node share a GPU, so training traffic never leaves
// a node. A second, world-wide group exists only where
// nodes must meet (dist.sync_every > 0); it is Gloo on host copies, so lo-fi nodes that share a
// GPU can still meet.
// Every collective counts the bytes this rank sends, split into within-node and between-node.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "lofi/dist/env.h"

namespace c10d {
class Store;
class Backend;
class Work;
}  // namespace c10d

namespace lofi::dist {

// Where a worker sits among nodes.
struct Topology {
  int64_t nodes = 1;      // N
  int64_t node = 0;       // this worker's node, 0..N-1
  int64_t node_size = 1;  // G: workers per node
  int64_t node_rank = 0;  // rank inside the node, 0..G-1
  bool whole_job = true;  // all N nodes are in this job (false: a dist.node_id job)
};

// NODES nodes; NODE_ID >= 0 makes this job node NODE_ID alone. Throws when the world does not
// split into equal nodes.
Topology make_topology(const WorkerEnv& env, int64_t nodes, int64_t node_id);

// A collective's ERROR (Gloo's, NCCL's) as a user reads it: its first line without the library's
// source location, and what it means (a peer that ended, one that did not take part within
// TIMEOUT_S = dist.timeout_s).
std::string explain_collective_error(const std::string& error, double timeout_s);

struct CommOptions {
  double timeout_s = 300;            // rendezvous and collectives (dist.timeout_s)
  bool world_group = false;          // nodes meet during training (dist.sync_every > 0, dist.warm_start_steps > 0)
  int64_t apart_from_step = 0;       // the step from which they never meet again; -1: never (CheckIn)
  torch::Device device = torch::kCPU;  // where this worker's tensors live
  // The node group's backend: "nccl" (CUDA workers with a GPU each) or "gloo" (CPU, or CUDA
  // workers of one node sharing a GPU: Gloo stages their tensors in host memory). DevicePlan says.
  std::string node_backend = "gloo";
  std::string bind;                  // where a hosting rank 0 listens (dist.bind); empty: MASTER_ADDR
  std::string node_dir;              // this node's directory, told to the launcher with the node
  // The worker's resolved settings (its config as TOML): compared at check-in, so workers started
  // with different configs or --set flags are refused by key instead of training apart silently
  // or failing inside a collective. Empty: not compared.
  std::string settings;
};

class Comm {
 public:
  // Rendezvous (when the world has more than one worker): every rank checks in to the store, and
  // all wait until every rank has, or fail after dist.timeout_s naming the ranks that never came.
  // Then the node's group (and the world group, if asked). Each rank's check-in says its node,
  // whether nodes are independent (lo-fi without sync) and its node directory, for a launcher
  // hosting the store (it ends a failed node alone; dist/launcher.h).
  Comm(const WorkerEnv& env, const Topology& topo, const CommOptions& options);
  ~Comm();

  // One id shared by every worker of this start of the job (from rank 0), so files of an earlier
  // attempt in the run directory are told apart from this one's.
  const std::string& attempt() const { return attempt_; }

  const Topology& topology() const { return topo_; }
  const WorkerEnv& env() const { return env_; }

  // In-place mean over the node's workers of the tensors, sent as one flat fp32 buffer.
  void node_mean(const std::vector<torch::Tensor>& tensors);
  // In-place mean over every worker of the job (needs the world group).
  void world_mean(const std::vector<torch::Tensor>& tensors);

  // The minimum of VALUE over every worker of the job, agreed through the rendezvous store
  // under KEY (lone workers and dist.node_id jobs: over this job's workers).
  int64_t agree_min(const std::string& key, int64_t value);

  // The node's process group (null when the node is one worker), for the gradient buckets.
  c10::intrusive_ptr<c10d::Backend> node_group() const { return node_group_; }
  const torch::Device& device() const { return device_; }
  // Adds what a ring collective over BYTES inside the node sends from this rank, for collectives
  // issued elsewhere (the gradient buckets): RING_PASSES 2 for an all-reduce, 1 for a
  // reduce-scatter or an all-gather (each sends (n - 1) / n of the buffer per pass).
  void count_within_node(int64_t bytes, int64_t ring_passes = 2);
  // The same for collectives over the world group (a shared warm start's gradients).
  void count_between_nodes(int64_t bytes, int64_t ring_passes = 2);
  // The world-wide group (null unless CommOptions::world_group and the job is whole).
  c10::intrusive_ptr<c10d::Backend> world_group() const { return world_group_; }
  // Waits for WORK within dist.timeout_s; a failure names WHAT and this rank, and says what it
  // means (explain_collective_error).
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what);

  int64_t bytes_within_node() const { return bytes_within_node_; }
  // Bytes of world-wide all-reduces (dist.sync_every): an upper bound on cross-node traffic,
  // since with several workers per node some ring hops stay inside a node.
  int64_t bytes_between_nodes() const { return bytes_between_nodes_; }

 private:
  void mean(c10d::Backend& group, int64_t group_size, const std::vector<torch::Tensor>& tensors,
            int64_t& byte_counter);

  void check_in(const CommOptions& options);
  // The node group's backend every worker of the node agrees on: "gloo" if any of them planned
  // it (their hosts' GPUs are shared), else MINE.
  std::string node_backend(const std::string& mine);

  WorkerEnv env_;
  Topology topo_;
  double timeout_s_;
  torch::Device device_;
  std::string attempt_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> node_group_, world_group_;
  int64_t bytes_within_node_ = 0, bytes_between_nodes_ = 0;
};

}  // namespace lofi::dist
