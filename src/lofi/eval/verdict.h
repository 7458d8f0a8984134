#pragma once
// A claim about a comparison and whether the measurements bear it out, as results.json records it:
// {"half", "claim", "metric", "baseline", "lofi", "rule", "holds"}. The demo makes them
// (demo/claims.h); the terminal table and the report word them the same way.
#include <nlohmann/json.hpp>
#include <string>

namespace lofi::eval {

// "vision: the lo-fi average matches the baseline in-distribution: does not hold (top-1 % 26.4
// against the baseline's 33.0; rule: within 1 point)".
std::string verdict_sentence(const nlohmann::json& claim);

}  // namespace lofi::eval
