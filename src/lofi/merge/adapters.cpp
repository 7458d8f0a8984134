#include "lofi/merge/adapters.h"

#include <cmath>
#include <map>

#include "lofi/error.h"
#include "lofi/merge/nonfinite.h"
#include "lofi/strings.h"

namespace lofi::merge {

namespace {

const std::string kA = io::kLoraASuffix, kB = io::kLoraBSuffix;

std::string names(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::map<std::string, torch::Tensor> by_name(const io::LoraAdapter& a) { return {a.tensors.begin(), a.tensors.end()}; }

// The spec of a merged adapter of rank R whose scaling equals S.
io::LoraSpec respec(io::LoraSpec spec, int64_t r, double s) {
  spec.r = r;
  spec.alpha = spec.rslora ? s * std::sqrt(static_cast<double>(r)) : s * static_cast<double>(r);
  return spec;
}

}  // namespace

double low_rank_frobenius(const torch::Tensor& b, const torch::Tensor& a) {
  // ||B A||_F^2 = trace(A^T B^T B A) = sum((B^T B) o (A A^T)), both (K, K) and symmetric.
  torch::Tensor bb = torch::matmul(b.t().to(torch::kDouble), b.to(torch::kDouble));  // (K, K)
  torch::Tensor aa = torch::matmul(a.to(torch::kDouble), a.t().to(torch::kDouble));  // (K, K)
  return std::sqrt(std::max(0.0, (bb * aa).sum().item<double>()));
}

std::string adapter_mismatch(const std::vector<io::LoraAdapter>& adapters) {
  if (adapters.empty()) return "no adapters";
  const io::LoraAdapter& first = adapters.front();
  for (size_t i = 1; i < adapters.size(); ++i) {
    const io::LoraAdapter& o = adapters[i];
    const std::string who = o.source + " and " + first.source;
    if (o.spec.r != first.spec.r) return cat(who, " have ranks ", o.spec.r, " and ", first.spec.r);
    if (o.spec.alpha != first.spec.alpha || o.spec.rslora != first.spec.rslora)
      return cat(who, " scale differently (lora_alpha ", o.spec.alpha, " vs ", first.spec.alpha, ", use_rslora ", o.spec.rslora,
                 " vs ", first.spec.rslora, ")");
    if (o.spec.target_modules != first.spec.target_modules)
      return cat(who, " target different layers (", names(o.spec.target_modules), " vs ", names(first.spec.target_modules), ")");
    if (o.spec.modules_to_save != first.spec.modules_to_save)
      return cat(who, " save different modules (", names(o.spec.modules_to_save), " vs ", names(first.spec.modules_to_save), ")");
    auto base = [](const io::LoraAdapter& a) {
      auto it = a.metadata.find(io::kLoraBaseChecksumKey);
      return it == a.metadata.end() ? std::string() : it->second;
    };
    if (!base(o).empty() && !base(first).empty() && base(o) != base(first))
      return cat(who, " were trained on different bases (base weights' XXH3 ", base(o), " vs ", base(first), ")");
    if (o.tensors.size() != first.tensors.size()) return cat(who, " hold ", o.tensors.size(), " and ", first.tensors.size(), " tensors");
    const auto theirs = by_name(o);
    for (const auto& [name, t] : first.tensors) {
      auto it = theirs.find(name);
      if (it == theirs.end()) return cat(o.source, " lacks tensor '", name, "' of ", first.source);
      if (it->second.sizes() != t.sizes())
        return cat("tensor '", name, "' is ", it->second.sizes(), " in ", o.source, " but ", t.sizes(), " in ", first.source);
    }
  }
  return "";
}

AdapterMergeMode adapter_merge_mode(const std::string& name, const std::string& source) {
  if (name == "concat") return AdapterMergeMode::concat;
  if (name == "svd") return AdapterMergeMode::svd;
  if (name == "factors") return AdapterMergeMode::factors;
  fail(source, " = \"", name, "\": expected \"concat\" (exact, rank N r), \"dense\" (folded into the base), \"svd\" (rank R) or \"factors\"");
}

AdapterMergeResult merge_adapters(const std::vector<io::LoraAdapter>& adapters, const AdapterMergeOptions& options) {
  if (adapters.empty()) fail("merge: no adapters to merge");
  if (!options.force)
    if (const std::string why = adapter_mismatch(adapters); !why.empty())
      fail("merge: ", why, "; only adapters of one run's nodes average meaningfully (--force merges them anyway, ",
           "each with its own scaling, at the first one's rank and targets)");
  if (options.mode == AdapterMergeMode::svd && options.svd_rank <= 0)
    fail("--adapter-merge svd: the rank R must be >= 1, found ", options.svd_rank);
  // An adapter holding NaN or Inf would make every merge of it NaN or Inf: refused by name, as the
  // merge engine refuses such weights.
  for (const auto& a : adapters)
    refuse_nonfinite_weights(a.tensors, a.source, "the adapter of a diverged run; leave it out");
  torch::NoGradGuard no_grad;
  const double n = static_cast<double>(adapters.size());
  const io::LoraAdapter& first = adapters.front();
  const double s = first.spec.scaling();
  std::vector<std::map<std::string, torch::Tensor>> all;
  for (const auto& a : adapters) all.push_back(by_name(a));

  AdapterMergeResult out;
  out.adapter.source = "merge";
  out.adapter.metadata = first.metadata;
  out.adapter.metadata.erase(io::kDataChecksumKey);
  int64_t rank = first.spec.r;
  double max_error = 0;
  nlohmann::json layer_errors = nlohmann::json::object();
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> merged;  // layer -> (A, B)
  for (const std::string& layer : io::adapted_layers(first)) {
    // Stacked, each node's scaling applied to its B and 1/N: the exact average is Bcat @ Acat.
    std::vector<torch::Tensor> as, bs;
    for (size_t i = 0; i < adapters.size(); ++i) {
      as.push_back(all[i].at(layer + kA).to(torch::kFloat));
      bs.push_back(all[i].at(layer + kB).to(torch::kFloat) * (adapters[i].spec.scaling() / s / n));
    }
    torch::Tensor a_cat = torch::cat(as, 0), b_cat = torch::cat(bs, 1);  // (N r, in), (out, N r)
    if (options.mode == AdapterMergeMode::concat) {
      merged[layer] = {a_cat, b_cat};
      rank = a_cat.size(0);
      continue;
    }
    const double exact = low_rank_frobenius(b_cat, a_cat);
    torch::Tensor a_new, b_new;
    if (options.mode == AdapterMergeMode::factors) {
      a_new = torch::stack(as).mean(0);
      b_new = torch::stack(bs).sum(0);  // sum of B_i / N = the mean of B_i (same scaling)
      // Its error: Bf Af - Bcat Acat = [Bf, -Bcat] [Af; Acat], still low rank.
      const double diff = low_rank_frobenius(torch::cat({b_new, -b_cat}, 1), torch::cat({a_new, a_cat}, 0));
      const double e = exact > 0 ? diff / exact : diff;
      layer_errors[layer] = e;
      max_error = std::max(max_error, e);
    } else {
      // Bcat Acat = Qb Rb Ra^T Qa^T; the core Rb Ra^T (K, K) = U S V^T, so the product's SVD is
      // (Qb U) S (Qa V)^T. Rank R keeps the top R: B = Qb U_R S_R, A = (Qa V_R)^T.
      auto [qb, rb] = torch::linalg_qr(b_cat.to(torch::kDouble));         // (out, K), (K, K)
      auto [qa, ra] = torch::linalg_qr(a_cat.t().to(torch::kDouble));     // (in, K), (K, K)
      auto [u, sv, vh] = torch::linalg_svd(torch::matmul(rb, ra.t()), /*full_matrices=*/false);  // (K, K), (K), (K, K)
      const int64_t r = std::min<int64_t>(options.svd_rank, sv.size(0));
      b_new = torch::matmul(qb, u.slice(1, 0, r) * sv.slice(0, 0, r).unsqueeze(0)).to(torch::kFloat);  // (out, R)
      a_new = torch::matmul(qa, vh.slice(0, 0, r).t()).t().contiguous().to(torch::kFloat);             // (R, in)
      const double total = sv.pow(2).sum().item<double>(), kept = sv.slice(0, 0, r).pow(2).sum().item<double>();
      const double e = total > 0 ? std::sqrt(std::max(0.0, total - kept) / total) : 0.0;
      layer_errors[layer] = e;
      max_error = std::max(max_error, e);
      rank = options.svd_rank;
      if (r < options.svd_rank) {  // fewer singular values than R: pad with zero directions
        b_new = torch::cat({b_new, torch::zeros({b_new.size(0), options.svd_rank - r})}, 1);
        a_new = torch::cat({a_new, torch::zeros({options.svd_rank - r, a_new.size(1)})}, 0);
      }
    }
    merged[layer] = {a_new.contiguous(), b_new.contiguous()};
  }
  for (const auto& [name, t] : first.tensors) {
    const bool is_a = ends_with(name, kA), is_b = ends_with(name, kB);
    if (is_a || is_b) {
      const std::string layer = name.substr(0, name.size() - (is_a ? kA.size() : kB.size()));
      out.adapter.tensors.emplace_back(name, is_a ? merged.at(layer).first : merged.at(layer).second);
      continue;
    }
    // A module trained whole: the plain average, in fp64 for fp32 tensors as the merge engine does.
    torch::Tensor sum = torch::zeros(t.sizes(), torch::kDouble);
    for (const auto& m : all) sum += m.at(name).to(torch::kDouble);
    out.adapter.tensors.emplace_back(name, (sum / n).to(t.scalar_type()));
  }
  out.adapter.spec = respec(first.spec, rank, s);
  if (options.mode != AdapterMergeMode::concat) out.error = {{"max", max_error}, {"layers", layer_errors}};
  return out;
}

}  // namespace lofi::merge
