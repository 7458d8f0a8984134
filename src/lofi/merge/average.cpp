#include "lofi/merge/average.h"

#include <memory>
#include <numeric>

#include "lofi/error.h"
#include "lofi/io/safetensors.h"

namespace lofi::merge {

void average_files(const std::vector<std::string>& inputs, const std::vector<double>& weights_in,
                   const std::string& out) {
  if (inputs.empty()) fail("average: no inputs");
  std::vector<double> weights = weights_in.empty() ? std::vector<double>(inputs.size(), 1.0) : weights_in;
  if (weights.size() != inputs.size())
    fail("average: ", weights.size(), " weights for ", inputs.size(), " inputs");
  for (double w : weights)
    if (!(w >= 0)) fail("average: weights must be non-negative, found ", w);
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  if (!(total > 0)) fail("average: weights sum to 0");

  std::vector<std::unique_ptr<io::SafetensorsFile>> files;
  for (const auto& path : inputs) files.push_back(std::make_unique<io::SafetensorsFile>(path));
  const auto& first = *files[0];
  for (size_t i = 1; i < files.size(); ++i) {
    const auto& other = *files[i];
    for (const auto& e : first.entries()) {
      const io::TensorEntry* o = other.find(e.name);
      if (!o) fail("average: tensor '", e.name, "' is in ", first.path(), " but not in ", other.path());
      if (o->shape != e.shape || o->dtype != e.dtype)
        fail("average: tensor '", e.name, "' is ", e.dtype, " ", torch::IntArrayRef(e.shape), " in ", first.path(),
             " but ", o->dtype, " ", torch::IntArrayRef(o->shape), " in ", other.path());
    }
    if (other.entries().size() != first.entries().size())
      for (const auto& o : other.entries())
        if (!first.find(o.name)) fail("average: tensor '", o.name, "' is in ", other.path(), " but not in ", first.path());
  }

  io::Metadata metadata{{"lofi.merge", "average"}};
  if (auto it = first.metadata().find("lofi.config"); it != first.metadata().end()) metadata.insert(*it);
  for (size_t i = 0; i < inputs.size(); ++i)
    metadata["lofi.input." + std::to_string(i)] = inputs[i] + " weight=" + std::to_string(weights[i] / total);
  io::SafetensorsWriter writer(out, first.entries(), metadata);
  for (const auto& e : first.entries()) {
    torch::Tensor base = first.load(e);
    if (!base.is_floating_point()) {
      for (size_t i = 1; i < files.size(); ++i)
        if (!torch::equal(base, files[i]->load(e.name)))
          fail("average: integer tensor '", e.name, "' differs between ", first.path(), " and ", files[i]->path());
      writer.write(base);
      continue;
    }
    torch::Tensor sum = base.to(torch::kFloat64) * weights[0];
    for (size_t i = 1; i < files.size(); ++i) sum.add_(files[i]->load(e.name).to(torch::kFloat64), weights[i]);
    writer.write(sum.div_(total).to(base.scalar_type()));
  }
  writer.commit();
}

}  // namespace lofi::merge
