#include "lofi/dist/comm.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>

#include "lofi/dist/process_groups.h"
#include "lofi/error.h"

namespace lofi::dist {
namespace {

// A ring all-reduce sends 2 (n - 1) / n of the buffer from every rank.
int64_t ring_bytes(int64_t bytes, int64_t n) { return 2 * (n - 1) * bytes / n; }

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

}  // namespace

Topology make_topology(const WorkerEnv& env, int64_t nodes, int64_t node_id) {
  Topology t;
  t.nodes = nodes;
  if (node_id >= 0) {
    t.whole_job = false;
    t.node = node_id;
    t.node_size = env.world_size;
    t.node_rank = env.rank;
    return t;
  }
  if (env.world_size % nodes != 0)
    fail("dist.nodes = ", nodes, " does not divide the ", env.world_size, " workers into equal nodes");
  t.node_size = env.world_size / nodes;
  t.node = env.rank / t.node_size;
  t.node_rank = env.rank % t.node_size;
  return t;
}

Comm::Comm(const WorkerEnv& env, const Topology& topo, double timeout_s, bool world_group, const torch::Device& device)
    : env_(env), topo_(topo), timeout_s_(timeout_s), device_(device) {
  if (env.world_size == 1) return;
  const std::string where = cat(env.master_addr, ":", env.master_port);
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(env.master_port);
    // Rank 0 hosts the store unless the launcher does (lofi launch, torchrun's agent).
    options.isServer = env.rank == 0 && !env.agent_store;
    options.numWorkers = env.world_size;
    options.waitWorkers = true;  // every client checks in; a hosting rank 0 waits for all of them
    options.timeout = to_ms(timeout_s);
    store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    // Every node's group lives behind its own prefix: no key, and no connection, is shared.
    const std::string node_prefix = cat("node-", topo.node);
    const int node_rank = static_cast<int>(topo.node_rank), node_size = static_cast<int>(topo.node_size);
    if (topo.node_size > 1)
      node_group_ = device.is_cuda() ? make_nccl_group(store_, node_prefix, node_rank, node_size, timeout_s, device.index())
                                     : make_gloo_group(store_, node_prefix, node_rank, node_size, timeout_s);
    if (world_group && topo.whole_job)
      world_group_ = make_gloo_group(store_, "world", env.rank, env.world_size, timeout_s);
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    fail("rendezvous of ", env.world_size, " workers at ", where, " failed within dist.timeout_s = ", timeout_s,
         " s (rank ", env.rank, "): ", what);
  }
}

Comm::~Comm() = default;

void Comm::mean(c10d::Backend& group, int64_t group_size, const std::vector<torch::Tensor>& tensors,
                int64_t& byte_counter) {
  if (group_size == 1 || tensors.empty()) return;
  // The world group is Gloo: it reduces host copies; a node group reduces on the node's device.
  const torch::Device where = &group == node_group_.get() ? device_ : torch::Device(torch::kCPU);
  std::vector<torch::Tensor> flat_parts;
  for (const auto& t : tensors) flat_parts.push_back(t.detach().to(where, torch::kFloat32).reshape({-1}));
  std::vector<torch::Tensor> buffer{torch::cat(flat_parts)};
  wait(group.allreduce(buffer), cat("all-reduce among ", group_size, " workers"));
  buffer[0].div_(static_cast<double>(group_size));
  byte_counter += ring_bytes(buffer[0].numel() * 4, group_size);
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    int64_t n = t.numel();
    t.copy_(buffer[0].narrow(0, offset, n).view_as(t));
    offset += n;
  }
}

void Comm::wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
  try {
    work->wait(to_ms(timeout_s_));
  } catch (const std::exception& e) {
    std::string message = e.what();
    fail(what, " failed (rank ", env_.rank, "): ", message.substr(0, message.find('\n')));
  }
}

void Comm::count_within_node(int64_t bytes) {
  if (node_group_) bytes_within_node_ += ring_bytes(bytes, topo_.node_size);
}

void Comm::node_mean(const std::vector<torch::Tensor>& tensors) {
  if (node_group_) mean(*node_group_, topo_.node_size, tensors, bytes_within_node_);
}

void Comm::world_mean(const std::vector<torch::Tensor>& tensors) {
  if (!world_group_) {
    if (env_.world_size == 1) return;
    fail("internal: world-wide averaging needs the world group");
  }
  mean(*world_group_, env_.world_size, tensors, bytes_between_nodes_);
}

int64_t Comm::agree_min(const std::string& key, int64_t value) {
  if (!store_) return value;
  std::string mine = std::to_string(value);
  store_->set(cat(key, "/rank-", env_.rank), std::vector<uint8_t>(mine.begin(), mine.end()));
  int64_t result = value;
  try {
    for (int r = 0; r < env_.world_size; ++r) {
      std::vector<uint8_t> theirs = store_->get(cat(key, "/rank-", r));  // waits up to the store timeout
      result = std::min<int64_t>(result, std::stoll(std::string(theirs.begin(), theirs.end())));
    }
  } catch (const std::exception& e) {
    std::string what = e.what();
    fail("workers did not agree on ", key, " within dist.timeout_s: ", what.substr(0, what.find('\n')));
  }
  return result;
}

void Comm::announce_node_done() {
  if (store_ && topo_.whole_job) store_->set(cat("done/node-", topo_.node), std::vector<uint8_t>{1});
}

void Comm::wait_all_nodes_done(double timeout_s) {
  if (!store_ || !topo_.whole_job) return;
  std::vector<std::string> keys;
  for (int64_t k = 0; k < topo_.nodes; ++k) keys.push_back(cat("done/node-", k));
  try {
    store_->wait(keys, to_ms(timeout_s));
  } catch (const std::exception& e) {
    fail("waited ", timeout_s, " s for every node to write its final weights; some did not (", 
         std::string(e.what()).substr(0, std::string(e.what()).find('\n')), ")");
  }
}

}  // namespace lofi::dist
