// A merge method: how the inputs' values of one tensor become the output's. The merge engine
// (engine.h) does everything else — opening and checking inputs, chunking, threads, provenance,
// the atomic write — and the in-memory merges (soups, interpolation) call the same methods, so a
// method is one file under methods/: a class deriving from Method and a LOFI_MERGE_METHOD line.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/registry.h"

namespace lofi::merge {

// The knobs of the methods, as mergekit names them; each method reads the ones it uses.
struct MethodParams {
  double lambda = 1.0;   // task-arithmetic, ties, dare: scale of the merged difference
  double density = 1.0;  // ties, dare: fraction of each input's difference kept, in (0, 1]
  double t = 0.5;        // slerp: 0 gives the first input, 1 the second
  uint64_t seed = 0;     // dare: the seed of the drop masks
};

// A run of elements of one tensor, flattened: each input's values of elements
// [offset, offset + length) (the whole tensor when the method asks for whole tensors), all of the
// inputs' dtype, and the base model's values of the same elements.
struct Piece {
  std::string name;                    // the tensor
  int64_t offset = 0;                  // first element of the run
  std::vector<torch::Tensor> inputs;   // one 1-D tensor per input
  torch::Tensor base;                  // 1-D; undefined for methods without a base
  std::vector<double> weights;         // one per input, as given (a method normalises if it should)
};

class Method {
 public:
  virtual ~Method() = default;
  virtual bool needs_base() const { return false; }     // true: --base is required; false: refused
  virtual bool whole_tensors() const { return false; }  // each tensor at once (top-k, norms), not in chunks
  virtual bool normalises_weights() const { return false; }  // weights are shares (non-negative, sum > 0)
  virtual bool uses_weights() const { return true; }         // false: --weights is refused, not ignored
  // Refuses an input count or parameters the method cannot honour, naming the flag.
  virtual void check(size_t /*inputs*/, const MethodParams& /*params*/) const {}
  // The merged values of PIECE: 1-D, float32 or float64, as long as PIECE's inputs. The result may
  // be a buffer the method reuses on this thread: callers copy it before the next call. PIECE's
  // tensors may be views of a caller's models: a method drops its handles to free memory early,
  // but never writes into them.
  virtual torch::Tensor merge(Piece piece, const MethodParams& params) const = 0;
  // The parameters it uses ("lambda", "density", "t", "seed"), for the output's provenance; a flag
  // given for another is refused.
  virtual nlohmann::json describe(const MethodParams& /*params*/) const { return nlohmann::json::object(); }
  // One line for --help.
  virtual std::string summary() const = 0;
};

// The method registered as NAME ("average", "ties", ...); an unknown name is refused, listing the known.
const Method& find_method(const std::string& name);

// Refuses, naming WHAT, a --lambda, --t or --density that is not a finite number, and weights that
// are not finite numbers within fp32's range (merges compute in the inputs' dtype: 1e39 is Inf).
void check_numbers(const MethodParams& params, const std::vector<double>& weights, const std::string& what);
std::vector<std::string> method_names();  // sorted

// The dtype a method computes in for inputs of dtype INPUT: float64 for float64, else float32.
torch::Dtype compute_dtype(torch::Dtype input);

// The first N elements of BUFFERS[SLOT], grown (or re-typed) to hold them: for per-thread buffers
// (thread_local BUFFERS) that the engine and the methods reuse across calls, as a fresh large
// allocation per chunk or tensor costs a page fault per 4 KB.
torch::Tensor reused_buffer(std::vector<torch::Tensor>& buffers, size_t slot, int64_t n, torch::Dtype dtype);

using MethodRegistry = Registry<Method>;

}  // namespace lofi::merge

// In methods/STEM.cpp: LOFI_MERGE_METHOD(STEM, "cli-name", Class). The build generates the call
// of every methods/*.cpp's register function (a static registrar would be dropped from the static
// library by the linker, as nothing refers to it), so adding a method adds a file and nothing else.
#define LOFI_MERGE_METHOD(stem, name, Class)                                 \
  namespace lofi::merge::methods {                                           \
  void register_##stem(MethodRegistry& registry) {                           \
    registry.add(name, std::make_shared<Class>());                           \
  }                                                                          \
  }
