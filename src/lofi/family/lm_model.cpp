#include "lofi/family/lm_model.h"

#include <filesystem>
#include <optional>

#include "lofi/error.h"
#include "lofi/family/adapters.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/lora.h"
#include "lofi/model/hf.h"
#include "lofi/model/weights.h"

namespace lofi::family {

namespace {

// torch's default dtype set for a scope: what the modules' constructors allocate their weights in.
class DefaultDtype {
 public:
  explicit DefaultDtype(torch::Dtype dtype) : was_(torch::get_default_dtype()) {
    torch::set_default_dtype(caffe2::TypeMeta::fromScalarType(dtype));
  }
  ~DefaultDtype() { torch::set_default_dtype(was_); }
  DefaultDtype(const DefaultDtype&) = delete;
  DefaultDtype& operator=(const DefaultDtype&) = delete;

 private:
  caffe2::TypeMeta was_;
};

}  // namespace

model::CausalLm make_lm(const train::ModelConfig& config, uint64_t seed, model::DeferredWeights* deferred) {
  // A LoRA adapter (lofi's file or PEFT's directory): its base, then the adapter attached.
  if (!config.init.empty() && io::is_lora_adapter(config.init)) {
    if (deferred) fail("internal: a LoRA adapter's base is not built in pieces");
    const io::LoraAdapter adapter = io::read_lora_adapter(config.init);
    train::ModelConfig base = config;
    base.init = adapter_base(adapter);
    model::CausalLm lm = make_lm(base, seed);
    attach_adapter(*lm, adapter, config.dtype);
    return lm;
  }
  train::ModelConfig resolved = config;
  train::apply_hf_init(resolved);
  // A bf16 base (model.dtype, a LoRA run's frozen weights) is made in bf16 and loaded into it: a
  // bf16 checkpoint is never widened to an fp32 copy on the way.
  std::optional<DefaultDtype> dtype;
  if (config.dtype == "bf16") dtype.emplace(torch::kBFloat16);
  // The layers draw nothing as they are built: every weight is set next, by the seeded init (one
  // stream per parameter) or the load (a missing weight is an error). Deferred: the layers' weights
  // on the meta device, each filled later with what an ordinary build gives it.
  std::optional<model::MetaParameters> meta;
  std::optional<model::NoInitDraws> no_draws;
  if (deferred) meta.emplace(/*keep_draws=*/false);
  else no_draws.emplace();
  model::CausalLm lm = model::make_causal_lm(train::lm_config(resolved));
  if (resolved.init.empty()) {
    model::init_causal_lm_weights(*lm, seed, deferred);
  } else if (model::is_hf_model_dir(resolved.init)) {
    model::load_hf_weights(*lm, resolved.init, deferred);
  } else {
    auto file = std::make_shared<const io::SafetensorsFile>(resolved.init);
    file->verify_data_checksum();  // a lofi output (a merge, a node's final) damaged since it was written
    model::load_module_weights(*lm, std::move(file), model::tied_copies(*lm), deferred);
  }
  return lm;
}

std::string find_tokenizer_dir(const std::string& model, const std::string& given) {
  if (!given.empty()) return given;
  if (model::is_hf_model_dir(model)) return model;
  if (io::is_lora_adapter(model)) return find_tokenizer_dir(adapter_base(io::read_lora_adapter(model)), "");  // its base's
  if (!std::filesystem::is_regular_file(model)) return {};
  if (const std::string source = train::pretrained_source(model); model::is_hf_model_dir(source)) return source;
  return {};
}

std::string find_tokenizer_dir_or_fail(const std::string& model, const std::string& given, const std::string& what,
                                       bool bytes_too) {
  if (given == "bytes" && !bytes_too)
    fail(what, ": --tokenizer bytes is for generate; this needs a Hugging Face tokenizer directory (tokenizer.json, ",
         "or vocab.json + merges.txt)");
  const std::string dir = find_tokenizer_dir(model, given);
  if (dir.empty())
    fail(what, ": no tokenizer for ", model, ": give --tokenizer DIR (a Hugging Face tokenizer directory)",
         bytes_too ? ", or --tokenizer bytes for a byte-level model such as the demo's" : "");
  return dir;
}

}  // namespace lofi::family
