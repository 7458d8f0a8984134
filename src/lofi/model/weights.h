// Module weights to and from safetensors by parameter name. Names are the module's own
// (Hugging Face / timm by construction), so this is a checked copy, not a renaming.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lofi/io/safetensors.h"
#include "lofi/model/deferred_weights.h"

namespace lofi::model {

// A weight a checkpoint stores in another form (MXFP4 blocks and their scales, model/mxfp4.h),
// made when it is copied: its SHAPE, and MAKE, which builds its value (host memory, a floating
// dtype). Made one at a time, so a model's worth of converted weights is never whole in memory.
struct MadeTensor {
  std::vector<int64_t> shape;
  std::function<torch::Tensor()> make;
};
using MadeTensors = std::map<std::string, MadeTensor>;  // by the parameter's name

// Parameters then buffers, by name, detached (shares storage with the module).
io::NamedTensors module_weights(const torch::nn::Module& module);

// Copies TENSORS into TARGETS (views of a module's own tensors, by name), converting dtype, checked
// as load_module_weights below. What load_named_tensors does for every weight, and a LoRA run's
// checkpoint for the trained ones alone. A target on the meta device (a fully sharded start's)
// is left to DEFERRED: its copy, and COPIED, run when it is filled, so TENSORS' memory (a mapped
// file) must live until then (DeferredWeights::keep). MADE: targets whose values are made as they
// are copied instead of taken from TENSORS.
void copy_named_tensors(const io::NamedTensors& targets, const io::NamedTensors& tensors, const std::string& source,
                        const std::vector<std::string>& ignored = {},
                        const std::function<void(const std::string&)>& copied = {}, DeferredWeights* deferred = nullptr,
                        const MadeTensors& made = {});

// Copies every parameter of MODULE from TENSORS (SOURCE names them in errors), converting dtype;
// checked as below. COPIED, when given, is called with each tensor's name once it has been copied
// (a loader of mapped files lets its pages go there). MADE as copy_named_tensors'.
void load_named_tensors(torch::nn::Module& module, const io::NamedTensors& tensors, const std::string& source,
                        const std::vector<std::string>& ignored = {},
                        const std::function<void(const std::string&)>& copied = {}, DeferredWeights* deferred = nullptr,
                        const MadeTensors& made = {});

// Copies every parameter of MODULE from FILE, converting dtype. A missing tensor, an extra one
// (other than IGNORED names such as a tied "lm_head.weight") or a shape mismatch is an error
// naming the tensor and the file. Parameters on the meta device are left to DEFERRED, which keeps
// FILE open for them. The first form also verifies FILE's data checksum where its header records
// one (SafetensorsFile::verify_data_checksum); the second leaves that to its caller (a checkpoint's
// is verified before resume picks it).
void load_module_weights(torch::nn::Module& module, const io::SafetensorsFile& file,
                         const std::vector<std::string>& ignored = {});
void load_module_weights(torch::nn::Module& module, std::shared_ptr<const io::SafetensorsFile> file,
                         const std::vector<std::string>& ignored, DeferredWeights* deferred);
// Every parameter of MODULE whose storage was freed (a sharded node's after training,
// dist::GradientSync::finish) gets new, uninitialised DTYPE storage on DEVICE, its shape kept, for
// weights about to be loaded into it.
void materialize_parameters(torch::nn::Module& module, torch::Device device, torch::Dtype dtype);

}  // namespace lofi::model
