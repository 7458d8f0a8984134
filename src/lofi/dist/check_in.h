// What each worker tells the rendezvous store when it joins: where it sits among nodes and
// whether its node trains on alone (lo-fi without dist.sync_every). A launcher hosting the store
// reads it to end a failed node alone instead of the whole job (dist/launcher.h).
#pragma once
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace lofi::dist {

struct CheckIn {
  int rank = 0;
  int64_t node = 0, nodes = 1, node_size = 1;
  bool independent = false;  // nodes never meet after start-up: one can fail alone
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
