#include "lofi/dist/check_in.h"

#include <nlohmann/json.hpp>

namespace lofi::dist {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(CheckIn, rank, node, nodes, node_size, apart_from_step, node_dir, timeout_s, pid, host, settings)

std::string check_in_key(int rank) { return "lofi/check-in/rank-" + std::to_string(rank); }

void write_check_in(c10d::Store& store, const CheckIn& c) {
  const std::string text = nlohmann::json(c).dump();
  store.set(check_in_key(c.rank), std::vector<uint8_t>(text.begin(), text.end()));
}

std::optional<CheckIn> read_check_in(c10d::Store& store, int rank) {
  try {
    if (!store.check({check_in_key(rank)})) return std::nullopt;
    const std::vector<uint8_t> bytes = store.get(check_in_key(rank));
    return nlohmann::json::parse(std::string(bytes.begin(), bytes.end())).get<CheckIn>();
  } catch (const std::exception&) {
    return std::nullopt;  // not a check-in of ours: the worker is treated as not checked in
  }
}


}  // namespace lofi::dist
