#include "lofi/merge/agreement.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "lofi/io/safetensors_set.h"

namespace lofi::merge {

namespace {

// The mean over pairs of cos(d_a, d_b) given the Gram matrix G[a][b] = <d_a, d_b>; NaN when some
// change is zero (no direction to compare).
double mean_pair_cosine(const std::vector<std::vector<double>>& g) {
  double sum = 0;
  int64_t pairs = 0;
  for (size_t a = 0; a < g.size(); ++a)
    for (size_t b = a + 1; b < g.size(); ++b, ++pairs) {
      const double norms = std::sqrt(g[a][a] * g[b][b]);
      if (!(norms > 0)) return std::nan("");
      sum += std::clamp(g[a][b] / norms, -1.0, 1.0);
    }
  return sum / static_cast<double>(pairs);
}

nlohmann::json summarise(const std::map<std::string, double>& cosines) {
  if (cosines.empty()) return nullptr;
  double sum = 0;
  std::pair<std::string, double> lowest{"", 2.0};
  nlohmann::json tensors = nlohmann::json::object();
  for (const auto& [name, c] : cosines) {
    tensors[name] = c;
    sum += c;
    if (c < lowest.second) lowest = {name, c};
  }
  return {{"mean", sum / static_cast<double>(cosines.size())},
          {"lowest", {{"tensor", lowest.first}, {"cosine", lowest.second}}},
          {"tensors", tensors}};
}

}  // namespace

nlohmann::json delta_agreement(const std::vector<std::string>& finals, const std::string& base) {
  if (finals.size() < 2) return nullptr;
  torch::NoGradGuard no_grad;
  const io::SafetensorsSet base_set(base);
  std::vector<std::unique_ptr<io::SafetensorsSet>> sets;
  for (const auto& f : finals) sets.push_back(std::make_unique<io::SafetensorsSet>(f));
  std::map<std::string, double> cosines;
  for (const auto& t : sets[0]->tensors()) {
    const std::string& name = t.entry->name;
    const io::SafetensorsSet::Tensor* b = base_set.find(name);
    if (!b || !torch::isFloatingType(io::dtype_from_safetensors(t.entry->dtype, name))) continue;
    const torch::Tensor w0 = b->file->load(*b->entry).to(torch::kDouble).flatten();
    std::vector<torch::Tensor> d;
    for (const auto& s : sets) {
      const io::SafetensorsSet::Tensor* x = s->find(name);
      if (!x) break;
      torch::Tensor xi = x->file->load(*x->entry).to(torch::kDouble).flatten();
      if (xi.numel() != w0.numel()) break;
      d.push_back(xi - w0);
    }
    if (d.size() != sets.size()) continue;
    std::vector<std::vector<double>> g(d.size(), std::vector<double>(d.size()));
    for (size_t a = 0; a < d.size(); ++a)
      for (size_t c = a; c < d.size(); ++c) g[a][c] = g[c][a] = torch::dot(d[a], d[c]).item<double>();
    const double cos = mean_pair_cosine(g);
    if (!std::isnan(cos)) cosines[name] = cos;
  }
  return summarise(cosines);
}

nlohmann::json adapter_agreement(const std::vector<io::LoraAdapter>& adapters) {
  if (adapters.size() < 2) return nullptr;
  torch::NoGradGuard no_grad;
  const std::string kA = io::kLoraASuffix, kB = io::kLoraBSuffix;
  std::vector<std::map<std::string, torch::Tensor>> all;
  for (const auto& a : adapters) all.emplace_back(a.tensors.begin(), a.tensors.end());
  std::map<std::string, double> cosines;
  for (const std::string& layer : io::adapted_layers(adapters[0])) {
    std::vector<torch::Tensor> as, bs;
    for (size_t i = 0; i < adapters.size(); ++i) {
      as.push_back(all[i].at(layer + kA).to(torch::kDouble));
      bs.push_back(all[i].at(layer + kB).to(torch::kDouble) * adapters[i].spec.scaling());
    }
    // <B_a A_a, B_b A_b>_F = sum((B_a^T B_b) o (A_a A_b^T)): (r, r) matrices.
    std::vector<std::vector<double>> g(as.size(), std::vector<double>(as.size()));
    for (size_t a = 0; a < as.size(); ++a)
      for (size_t c = a; c < as.size(); ++c)
        g[a][c] = g[c][a] = (torch::matmul(bs[a].t(), bs[c]) * torch::matmul(as[a], as[c].t())).sum().item<double>();
    const double cos = mean_pair_cosine(g);
    if (!std::isnan(cos)) cosines[layer] = cos;
  }
  return summarise(cosines);
}

std::string agreement_text(const nlohmann::json& a) {
  if (a.is_null()) return "";
  char line[400];
  std::snprintf(line, sizeof(line), "nodes' changes agree: mean cosine %.3f over %zu tensors (lowest %.3f, %s)",
                a["mean"].get<double>(), a["tensors"].size(), a["lowest"]["cosine"].get<double>(),
                a["lowest"]["tensor"].get<std::string>().c_str());
  return line;
}

}  // namespace lofi::merge
