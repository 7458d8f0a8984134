// Model families: what a kind of model brings to the layers under it. The trainer (train/) runs
// any task, the metrics and tables (eval/) score any predictions; a family ties them to one kind
// of model: the training task of its model.arch values, and the scorer that `eval`, `soup` and
// `interpolate` sweep weights with. Each family is one file under families/ with a
// LOFI_MODEL_FAMILY line; the build registers every file there, so adding a family adds files.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lofi/dist/comm.h"
#include "lofi/family/scorer.h"
#include "lofi/io/safetensors.h"
#include "lofi/registry.h"
#include "lofi/train/config.h"
#include "lofi/train/memory_plan.h"
#include "lofi/train/task.h"

namespace lofi::family {

// What the CLI shows of a model's scores: perplexity tables or top-k tables.
enum class Kind { language_model, image_classifier };

class Family {
 public:
  virtual ~Family() = default;
  virtual std::string name() const = 0;                // e.g. "causal-lm"
  virtual std::vector<std::string> archs() const = 0;  // the model.arch values it builds
  virtual Kind kind() const = 0;
  // The trainer's task for CONFIG (train::TaskFactory).
  virtual std::unique_ptr<train::Task> make_task(const train::Config& config, const dist::Topology& topo,
                                                 uint64_t init_seed) const = 0;
  // A scorer of weights shaped as CONFIG on INPUTS; REFERENCE is a checkpoint of that model.
  virtual WeightsScorer make_scorer(const train::Config& config, const std::string& reference,
                                    const ScorerInputs& inputs) const = 0;
  // `lofi eval`'s columns and rows for models shaped as CONFIG on INPUTS (REFERENCE as above).
  virtual std::unique_ptr<TableScorer> make_table_scorer(const train::Config& config, const std::string& reference,
                                                         const ScorerInputs& inputs) const = 0;
  // The weights at PATH in lofi's names, as a model shaped as CONFIG holds them: a lofi
  // checkpoint as it is; a family may also read its published form (a Hugging Face directory).
  virtual io::NamedTensors load_weights(const train::Config& config, const std::string& path) const;
  // The model's memory footprint under CONFIG at MICRO_BATCH samples per micro-batch, for the
  // memory plan (train/memory_plan.h); nothing where the family does not model it.
  virtual std::optional<train::ModelFootprint> footprint(const train::Config&, int64_t /*micro_batch*/) const {
    return std::nullopt;
  }
};

// The family that builds model.arch = ARCH; fails naming the value and the known ones.
const Family& family_of(const std::string& arch);
// Every model.arch a family builds, sorted.
std::vector<std::string> known_archs();

// CONFIG's family's load_weights: what soups, interpolation and weight averages in `eval` read.
io::NamedTensors load_weights(const train::Config& config, const std::string& path);

// The memory plan of CONFIG for one worker of a node of NODE_WORKERS workers, LOCAL_WORKERS of
// them on this machine (this one LOCAL_RANK), on the device train.device gives it here, against
// that device's memory; nothing when CONFIG's family has no footprint.
std::optional<train::MemoryPlan> memory_plan(const train::Config& config, int64_t node_workers, int64_t local_workers,
                                             int64_t local_rank);

// The trainer's task factory: CONFIG's family's task.
std::unique_ptr<train::Task> make_task(const train::Config& config, const dist::Topology& topo, uint64_t init_seed);

// A family is registered under each model.arch it builds.
class FamilyRegistry : public Registry<Family> {
 public:
  FamilyRegistry() : Registry("model family") {}
  void add(std::unique_ptr<Family> family);  // fails when one of its archs is taken
  std::vector<std::string> archs() const { return names(); }
};

}  // namespace lofi::family

// In families/STEM.cpp: LOFI_MODEL_FAMILY(STEM, Class). The build generates the call of every
// families/*.cpp's register function (a static registrar would be dropped from the static
// library by the linker, as nothing refers to it).
#define LOFI_MODEL_FAMILY(stem, Class)                         \
  namespace lofi::family::families {                           \
  void register_##stem(FamilyRegistry& registry) {             \
    registry.add(std::make_unique<Class>());                   \
  }                                                            \
  }
