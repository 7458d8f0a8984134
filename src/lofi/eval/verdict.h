#pragma once
// A claim about a comparison and whether the measurements bear it out, as results.json records it:
// {"half", "claim", "metric", "baseline", "lofi", "rule", "holds"}. The demo makes them
// (demo/claims.h); the terminal table and the report word them the same way.
#include <nlohmann/json.hpp>
#include <string>

namespace lofi::eval {

// "vision: the lo-fi average matches the baseline in-distribution: does not hold (top-1 %: lo-fi
// 26.4, the baseline 33; a match is within 1 point of the baseline)".
std::string verdict_sentence(const nlohmann::json& claim);

}  // namespace lofi::eval
