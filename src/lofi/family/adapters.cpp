#include "lofi/family/adapters.h"

#include <cstdio>
#include <filesystem>

#include "lofi/error.h"
#include "lofi/family/image_task.h"
#include "lofi/family/lm_model.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/earlier_output.h"
#include "lofi/io/temporaries.h"
#include "lofi/merge/inputs.h"
#include "lofi/merge/method.h"
#include "lofi/model/hf.h"
#include "lofi/model/lora.h"
#include "lofi/model/weights.h"
#include "lofi/seed.h"
#include "lofi/strings.h"
#include "lofi/text.h"

namespace lofi::family {

namespace fs = std::filesystem;

io::Metadata LoraRun::metadata() const {
  if (!enabled()) return {};
  io::Metadata meta{{io::kLoraSpecKey, spec.to_json().dump()}};
  if (!base_checksum.empty()) meta[io::kLoraBaseChecksumKey] = base_checksum;
  return meta;
}

LoraRun attach_lora(torch::nn::Module& model, const train::Config& config, bool record_checksum, std::string* line) {
  LoraRun run;
  if (!config.lora.enabled()) return run;
  run.active = true;
  if (io::is_lora_adapter(config.model.init)) {
    // An adapter to train further (make_lm loaded it on its base): its own rank, scaling, targets.
    const io::LoraAdapter adapter = io::read_lora_adapter(config.model.init);
    if (config.lora.rank != adapter.spec.r)
      fail("model.init ", config.model.init, " is a LoRA adapter of rank ", adapter.spec.r, ", and lora.rank = ", config.lora.rank,
           ": training an adapter further keeps its rank; set lora.rank = ", adapter.spec.r,
           " (or fold it into its base with lofi export and start new adapters from that)");
    run.spec = adapter.spec;
    run.spec.dropout = config.lora.dropout;
    if (record_checksum) run.base_checksum = io::weights_checksum(model::base_weights(model));
    model::train_loaded_lora(model, run.spec);
    if (config.model.dtype == "bf16") model::cast_frozen_weights(model, torch::kBFloat16);
    model::widen_trained_weights(model);
    if (line)
      *line = cat("lora: training the rank-", run.spec.r, " adapter ", config.model.init, " further, the base frozen in ",
                  config.model.dtype);
    return run;
  }
  // PEFT's base_model_name_or_path: an absolute path, so the adapter loads from anywhere.
  run.spec = config.lora.spec(config.model.init.empty() ? "" : fs::absolute(config.model.init).lexically_normal().string());
  if (record_checksum) run.base_checksum = io::weights_checksum(model::module_weights(model));
  if (config.model.arch != "vit") run.spec.task_type = "CAUSAL_LM";
  const std::vector<std::string> adapted = model::apply_lora(model, run.spec, seed::lora(static_cast<uint64_t>(config.train.seed)));
  run.spec.fan_in_fan_out = model::lora_fan_in_fan_out(model);
  if (config.model.dtype == "bf16") model::cast_frozen_weights(model, torch::kBFloat16);
  model::widen_trained_weights(model);  // modules_to_save of a base made in bf16 train in fp32
  if (line) {
    int64_t trained = 0, total = 0;
    for (const auto& p : model.parameters()) {
      total += p.numel();
      if (p.requires_grad()) trained += p.numel();
    }
    *line = cat("lora: rank ", run.spec.r, " adapters on ", adapted.size(), " layers; ", trained, " of ", total,
                " parameters train (", format_fixed(100.0 * static_cast<double>(trained) / std::max<double>(1, total), 2),
                "%), the base frozen in ", config.model.dtype);
  }
  return run;
}

std::string adapter_base(const io::LoraAdapter& adapter) {
  if (adapter.metadata.count("lofi.config")) {
    train::Config as_run;
    train::apply_toml_text(as_run, adapter.metadata.at("lofi.config"), adapter.source + " (lofi.config)");
    if (!as_run.model.init.empty()) return as_run.model.init;
  }
  const std::string& base = adapter.spec.base_model;
  if (base.empty())
    fail(adapter.source, ": the adapter names no base model (base_model_name_or_path is empty); lofi needs the base's ",
         "local directory there");
  if (!fs::exists(base))
    fail(adapter.source, ": its base model \"", base, "\" (base_model_name_or_path) is not a local path; lofi downloads ",
         "nothing: put the base's directory there, or copy the adapter beside a local base and edit adapter_config.json");
  return base;
}

void attach_adapter(torch::nn::Module& base, const io::LoraAdapter& adapter, const std::string& dtype) {
  if (auto it = adapter.metadata.find(io::kLoraBaseChecksumKey); it != adapter.metadata.end() && !it->second.empty())
    if (const std::string have = io::weights_checksum(model::base_weights(base)); have != it->second)
      fail(adapter.source, ": an adapter of another base: it was trained on weights whose XXH3 is ", it->second,
           ", the base given has ", have, " (", adapter_base(adapter), ")");
  if (dtype == "bf16") base.to(torch::kBFloat16);  // the base only: the adapter comes next, in fp32
  model::load_lora_adapter(base, adapter);
}

namespace {

// The model config of ADAPTER's base, its init the base itself.
train::ModelConfig base_model_config(const io::LoraAdapter& adapter) {
  const std::string base = adapter_base(adapter);
  train::Config config;
  if (adapter.metadata.count("lofi.config"))
    train::apply_toml_text(config, adapter.metadata.at("lofi.config"), adapter.source + " (lofi.config)");
  config.model.init = base;
  train::apply_hf_init(config.model);
  return config.model;
}

// A ViT adapter's class count: the classes its run recorded, else its saved head's rows.
int64_t vit_classes(const io::LoraAdapter& adapter, const train::ModelConfig& config) {
  if (auto it = adapter.metadata.find("lofi.classes"); it != adapter.metadata.end())
    return static_cast<int64_t>(nlohmann::json::parse(it->second).size());
  for (const auto& [name, t] : adapter.tensors)
    if (name == "head.weight") return t.size(0);
  return config.num_classes;
}

// ADAPTER folded into its base: the base's weights with every adapter's change added, under the
// base's names. For a language model, the model too (its export writes a Hugging Face directory).
io::NamedTensors folded_weights(const io::LoraAdapter& adapter, const train::ModelConfig& base, model::CausalLm* lm_out) {
  if (base.arch == "vit") {
    model::Vit vit = make_vit(base, vit_classes(adapter, base), 0);
    attach_adapter(*vit, adapter, "fp32");
    return model::merged_lora_weights(*vit);
  }
  model::CausalLm lm = make_lm(base, 0);
  attach_adapter(*lm, adapter, "fp32");
  io::NamedTensors out = model::merged_lora_weights(*lm);
  if (lm_out) *lm_out = lm;
  return out;
}

// The metadata a folded model keeps of its adapter's: the run's config and classes, not the
// adapter's own keys.
io::Metadata folded_metadata(const io::LoraAdapter& adapter) {
  io::Metadata meta;
  for (const char* key : {"lofi.config", "lofi.classes"})
    if (auto it = adapter.metadata.find(key); it != adapter.metadata.end()) meta[key] = it->second;
  return meta;
}

}  // namespace

nlohmann::json merge_adapter_files(const std::vector<std::string>& inputs, const std::string& out, const AdapterMerge& how,
                                   const io::Metadata& extra) {
  std::vector<io::LoraAdapter> adapters;
  std::vector<std::string> paths;  // PEFT directories stay as they are; run directories give their node finals
  for (const auto& input : inputs)
    if (io::is_lora_adapter(input)) paths.push_back(input);
    else for (const auto& p : merge::expand_inputs({input})) paths.push_back(p);
  for (const auto& path : paths) {
    if (!io::is_lora_adapter(path))
      fail(path, ": not a LoRA adapter (a lofi adapter file or a PEFT directory), and adapters merge only with adapters");
    adapters.push_back(io::read_lora_adapter(path));
  }
  const bool dense = how.mode == "dense";
  merge::AdapterMergeOptions options;
  options.mode = dense ? merge::AdapterMergeMode::concat : merge::adapter_merge_mode(how.mode, "--adapter-merge");
  options.svd_rank = how.rank;
  options.force = how.force;
  merge::AdapterMergeResult result = merge::merge_adapters(adapters, options);
  for (const auto& [k, v] : extra) result.adapter.metadata[k] = v;
  result.adapter.source = out;
  if (dense) {
    const train::ModelConfig base = base_model_config(adapters.front());
    model::CausalLm lm;
    const io::NamedTensors weights = folded_weights(result.adapter, base, &lm);
    if (lm && !ends_with(out, ".safetensors")) {  // a language model: a Hugging Face directory
      model::HfExportOptions hf;
      if (model::is_hf_model_dir(base.init)) hf.source_dir = base.init;
      io::remove_earlier_output(out, "config.json", "Hugging Face model directory");
      model::export_hf(*lm, out, hf);
    } else {  // a ViT (timm's names), or a .safetensors asked for: one file, as lofi's checkpoints
      io::save_safetensors(out, weights, folded_metadata(adapters.front()));
    }
  } else if (ends_with(out, ".safetensors")) {
    io::write_lora_file(out, result.adapter);
  } else {
    io::write_peft_adapter(out, result.adapter);
  }
  if (!result.error.is_null())
    std::printf("adapter merge %s: relative error against the exact average, largest over %zu layers: %s\n", how.mode.c_str(),
                result.error["layers"].size(), shortest_double(result.error["max"].get<double>()).c_str());
  return result.error;
}

namespace {

// Adapters folded into their base, written beside a merge's output as OUT.folded-K (a Hugging Face
// directory, or a .safetensors file), each registered as a temporary before it is made, so a
// signal removes them too; removed, and unregistered, when this goes out of scope.
class FoldedInputs {
 public:
  explicit FoldedInputs(std::string out) : out_(std::move(out)) {}
  ~FoldedInputs() {
    for (const auto& p : paths_) {
      std::error_code ec;
      fs::remove_all(p, ec);
      io::unregister_temporary(p);
    }
  }
  FoldedInputs(const FoldedInputs&) = delete;
  FoldedInputs& operator=(const FoldedInputs&) = delete;

  // Each of INPUTS folded; BASE becomes their one base.
  std::vector<std::string> fold(const std::vector<std::string>& inputs, std::string& base) {
    base.clear();
    for (const auto& path : inputs) {
      const io::LoraAdapter adapter = io::read_lora_adapter(path);
      const train::ModelConfig config = base_model_config(adapter);
      if (base.empty()) base = config.init;
      else if (fs::absolute(base).lexically_normal() != fs::absolute(config.init).lexically_normal())
        fail(path, ": its base is ", config.init, ", the first adapter's is ", base, "; adapters merge over one base");
      model::CausalLm lm;
      const io::NamedTensors weights = folded_weights(adapter, config, &lm);
      const bool hf_dir = lm && model::is_hf_model_dir(config.init);
      const std::string name = out_ + ".folded-" + std::to_string(paths_.size()) + (hf_dir ? "" : ".safetensors");
      std::error_code ec;
      fs::remove_all(name, ec);
      io::register_temporary(name, /*directory=*/hf_dir);
      paths_.push_back(name);
      if (hf_dir) {
        model::HfExportOptions hf;
        hf.source_dir = config.init;
        model::export_hf(*lm, name, hf);
      } else {
        io::save_safetensors(name, weights, folded_metadata(adapter));
      }
    }
    return paths_;
  }

 private:
  std::string out_;
  std::vector<std::string> paths_;
};

}  // namespace

merge::MergeResult merge_folded_adapters(merge::MergeOptions options) {
  FoldedInputs folded(options.out);
  std::string base;
  options.inputs = folded.fold(options.inputs, base);
  // The adapters' own base, for methods that merge differences from one (slerp takes none).
  if (options.base.empty() && merge::find_method(options.method).needs_base()) options.base = base;
  return merge::merge_checkpoints(options);
}

void write_peft_output(const std::string& adapter, const std::string& out_dir) {
  io::write_peft_adapter(out_dir, io::read_lora_adapter(adapter));
}

}  // namespace lofi::family
