#include "lofi/eval/verdict.h"

#include <cstdio>

#include "lofi/eval/table.h"

namespace lofi::eval {
namespace {

std::string number_text(const nlohmann::json& claim, const std::string& key) {
  const auto it = claim.find(key);
  if (it == claim.end() || !it->is_number()) return "?";
  const double v = it->get<double>();
  if (claim.value("metric", "") == "bytes") return format_bytes(v);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

}  // namespace

std::string verdict_sentence(const nlohmann::json& claim) {
  std::string s = claim.value("half", "") + ": " + claim.value("claim", "") + ": " +
                  (claim.value("holds", false) ? "holds" : "does not hold") + " (" + claim.value("metric", "") +
                  ": lo-fi " + number_text(claim, "lofi") + ", " + claim.value("against", std::string("the baseline")) +
                  " " + number_text(claim, "baseline");
  if (claim.contains("rule")) s += "; " + claim.value("rule", "");
  return s + ")";
}

}  // namespace lofi::eval
