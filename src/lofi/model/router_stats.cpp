#include "lofi/model/router_stats.h"

#include "lofi/error.h"

namespace lofi::model {
namespace {

thread_local RouterStats* current = nullptr;

}  // namespace

RouterStatsScope::RouterStatsScope(RouterStats* stats) : previous_(current) { current = stats; }
RouterStatsScope::~RouterStatsScope() { current = previous_; }

RouterStats* router_stats() { return current; }

torch::Tensor load_balancing_loss(const RouterStats& stats) {
  if (stats.probability_sums.empty() || stats.tokens == 0) fail("load_balancing_loss: no router recorded its choices");
  // The rows counted, all layers together: each layer routes the same ones.
  const torch::Tensor rows = stats.counted.defined()
                                 ? stats.counted.sum() * static_cast<double>(stats.choices.size())
                                 : torch::full({}, static_cast<double>(stats.tokens), stats.choices.front().options());
  const torch::Tensor share = torch::stack(stats.choices).sum(0) / rows;              // (L, E) -> (E): f
  const torch::Tensor probability = torch::stack(stats.probability_sums).sum(0) / rows;  // (L, E) -> (E): P
  return (share * probability).sum() * static_cast<double>(share.size(0));
}

}  // namespace lofi::model
