#include "lofi/dist/check_in.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

namespace lofi::dist {

std::string check_in_key(int rank) { return "lofi/check-in/rank-" + std::to_string(rank); }

void write_check_in(c10d::Store& store, const CheckIn& c) {
  const nlohmann::json j{{"rank", c.rank}, {"node", c.node}, {"nodes", c.nodes}, {"node_size", c.node_size},
                         {"independent", c.independent}, {"node_dir", c.node_dir}, {"timeout_s", c.timeout_s}, {"pid", c.pid}, {"host", c.host}};
  const std::string text = j.dump();
  store.set(check_in_key(c.rank), std::vector<uint8_t>(text.begin(), text.end()));
}

std::optional<CheckIn> read_check_in(c10d::Store& store, int rank) {
  try {
    if (!store.check({check_in_key(rank)})) return std::nullopt;
    const std::vector<uint8_t> bytes = store.get(check_in_key(rank));
    const auto j = nlohmann::json::parse(std::string(bytes.begin(), bytes.end()));
    CheckIn c;
    c.rank = j.at("rank");
    c.node = j.at("node");
    c.nodes = j.at("nodes");
    c.node_size = j.at("node_size");
    c.independent = j.at("independent");
    c.node_dir = j.at("node_dir");
    c.timeout_s = j.at("timeout_s");
    c.pid = j.at("pid");
    c.host = j.at("host");
    return c;
  } catch (const std::exception&) {
    return std::nullopt;  // not a check-in of ours: the worker is treated as not checked in
  }
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

}  // namespace lofi::dist
