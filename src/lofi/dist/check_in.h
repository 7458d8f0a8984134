// What each worker tells the rendezvous store when it joins: where it sits among nodes and
// from which step its node trains on alone (lo-fi without dist.sync_every, after any shared warm
// start). A launcher hosting the store reads it to end a failed node alone instead of the whole
// job (dist/launcher.h).
#pragma once
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace lofi::dist {

struct CheckIn {
  int rank = 0;
  int64_t node = 0, nodes = 1, node_size = 1;
  // The step from which the nodes never meet again, so that one can fail alone: 0 (lo-fi nodes
  // meet only at start-up), dist.warm_start_steps (they leave a shared warm start there), or -1
  // (they meet throughout, dist.sync_every, or the job is one node).
  int64_t apart_from_step = -1;
  std::string node_dir;      // its node's directory (status.json: dist/node_status.h)
  double timeout_s = 300;    // dist.timeout_s: a node silent this long has failed
  int64_t pid = 0;
  std::string host;
  std::string settings;  // the worker's resolved config (TOML): every worker of a job must run the same
};

std::string check_in_key(int rank);
void write_check_in(c10d::Store& store, const CheckIn& check_in);
// RANK's check-in, if it has checked in (and the store still answers).
std::optional<CheckIn> read_check_in(c10d::Store& store, int rank);

}  // namespace lofi::dist
