#include "lofi/model/hf.h"

#include <filesystem>
#include <map>

#include <c10/util/accumulate.h>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/hf_dir_files.h"
#include "lofi/io/safetensors_set.h"
#include "lofi/model/arch.h"
#include "lofi/model/hf_keys.h"
#include "lofi/model/hf_wrapped.h"
#include "lofi/model/lora.h"
#include "lofi/model/mxfp4.h"
#include "lofi/model/weights.h"
#include "lofi/strings.h"

namespace lofi::model {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string torch_dtype_name(const std::string& dtype) {
  if (dtype == "F32") return "float32";
  if (dtype == "F16") return "float16";
  if (dtype == "BF16") return "bfloat16";
  fail("export: --dtype must be F32, F16 or BF16, found \"", dtype, "\"");
}

}  // namespace

bool is_hf_model_dir(const std::string& path) {
  return fs::is_directory(path) && fs::exists(fs::path(path) / "config.json");
}

namespace {

// The config KEYS describe; a wrapper's (a vision-language model's) is its text_config's.
LmConfig config_from_keys(const HfKeys& keys, const std::string& type_fallback) {
  const std::string type = keys.string("model_type", type_fallback);
  if (!is_lm_arch(type)) {
    const auto wrapped = lm_arch_wrapped_by(type);
    if (!wrapped) {
      const std::string wrappers = lm_wrapper_list();
      fail(keys.source(), ": \"model_type\": ", keys.has("model_type") ? keys.json()["model_type"].dump() : "(absent)",
           " is not supported (lofi reads ", lm_arch_list(), wrappers.empty() ? "" : "; and the language model of " + wrappers, ")");
    }
    if (!keys.has("text_config"))
      fail(keys.source(), ": a \"", type, "\" model keeps its language model's config under \"text_config\", which is absent");
    const std::string inner = wrapped->arch->name();
    const HfKeys text = keys.nested("text_config");
    if (text.string("model_type", inner) != inner)
      fail(keys.source(), ": \"text_config.model_type\": \"", text.string("model_type", inner), "\" inside a \"", type,
           "\" model; lofi reads \"", inner, "\" there");
    LmConfig c = config_from_keys(text, inner);
    // Whether the head is the embedding: transformers 4 reads text_config's key, 5 the wrapper's
    // own. Where both are given they must agree; otherwise the one given.
    if (keys.has("tie_word_embeddings")) {
      const bool outer = keys.boolean("tie_word_embeddings", true);
      if (text.has("tie_word_embeddings") && outer != c.tie_word_embeddings)
        fail(keys.source(), ": \"tie_word_embeddings\" is ", outer ? "true" : "false", " but \"text_config.tie_word_embeddings\" is ",
             c.tie_word_embeddings ? "true" : "false", "; transformers 4 reads the second and 5 the first, so the model differs "
             "between them: set both to what the weights hold (an lm_head.weight of its own: false)");
      c.tie_word_embeddings = outer;
    }
    return c;
  }
  const LmArch& arch = lm_arch(type);
  LmConfig c;
  c.arch = type;
  read_hf_keys(arch.hf_keys(), keys, c);
  arch.read_hf(keys, c);
  check_lm_config(c, keys.source());
  return c;
}

}  // namespace

LmConfig lm_config_from_hf(const json& j, const std::string& source) {
  if (!j.is_object()) fail(source, ": expected a JSON object");
  // Quantized weights are not what lofi fine-tunes: it trains and merges bf16 / fp16 / fp32
  // tensors. gpt-oss's published MXFP4 experts are read dequantized (model/mxfp4.h), exactly;
  // others (GPTQ, AWQ, bitsandbytes) would be approximations, and are refused.
  std::string quantized;
  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    const json& q = j["quantization_config"];
    quantized = q.is_object() && q.contains("quant_method") && q["quant_method"].is_string()
                    ? q["quant_method"].get<std::string>() : "unknown";
    if (quantized != "mxfp4")
      fail(source, ": quantization_config (quant_method \"", quantized, "\"): lofi reads unquantized bf16, fp16 or fp32 weights ",
           "(and gpt-oss's MXFP4); save a dequantized copy first (transformers: model.dequantize(), then save_pretrained)");
  }
  LmConfig c = config_from_keys(HfKeys(j, source), "");
  if (!quantized.empty() && c.arch != "gpt_oss")
    fail(source, ": quantization_config (quant_method \"mxfp4\") on a \"", c.arch, "\" model: lofi reads MXFP4 weights ",
         "where transformers does, in gpt-oss's experts; save a dequantized copy first");
  return c;
}

LmConfig read_hf_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  json j;
  try {
    j = json::parse(io::read_text_file(path));
  } catch (const json::exception& e) {
    fail(path, ": not valid JSON (", e.what(), ")");
  }
  return lm_config_from_hf(j, path);
}

nlohmann::ordered_json hf_config_json(const LmConfig& c, const std::string& torch_dtype, const json& base) {
  nlohmann::ordered_json out = base.is_object() ? nlohmann::ordered_json(base) : nlohmann::ordered_json::object();
  if (wraps(base, c.arch)) {  // the language model's config inside the vision-language model's
    nlohmann::ordered_json text = hf_config_json(c, torch_dtype, base.value("text_config", json::object()));
    text.erase("architectures");  // the wrapper's own names the class
    out["text_config"] = text;
    out["torch_dtype"] = torch_dtype;
    if (out.contains("dtype")) out["dtype"] = torch_dtype;
    return out;
  }
  const LmArch& arch = lm_arch(c.arch);
  out["architectures"] = {arch.hf_class()};
  out["model_type"] = arch.name();
  write_hf_keys(arch.hf_keys(), c, out);
  arch.write_hf(c, out);
  out["torch_dtype"] = torch_dtype;  // transformers 4's name
  if (out.contains("dtype")) out["dtype"] = torch_dtype;  // transformers 5's, when the source had it
  out.erase("quantization_config");  // a source's MXFP4: what lofi writes is never quantized
  return out;
}

void load_hf_weights(CausalLmImpl& model, const std::string& path, DeferredWeights* deferred) {
  auto kept = std::make_shared<const io::SafetensorsSet>(path);
  const io::SafetensorsSet& set = *kept;
  const LmArch& arch = lm_arch(model.config.arch);
  const std::string prefix = arch.base_prefix();
  const bool tied = !model.lm_head;
  io::NamedTensors tensors;
  auto stored_name = std::make_shared<std::map<std::string, std::vector<std::string>>>();  // lofi's name -> the file's
  torch::Tensor tied_copy;
  // A vision-language checkpoint's language model (model/hf_wrapped.h): its tensors under the
  // names its own checkpoint would give them; the others are not the model's.
  std::vector<std::string> names;
  for (const auto& t : set.tensors()) names.push_back(t.entry->name);
  const io::WrappedNames spelling = arch.hf_wrappers().empty() ? io::WrappedNames::kNone : io::wrapped_names(names);
  auto lofi_name = [&](const std::string& name) {
    // Hub files of the base model omit the LM-head model's prefix ("decoder.layers...", "h.0...").
    return name == "lm_head.weight" || starts_with(name, prefix) ? name : prefix + name;
  };
  const io::NamedTensors views = set.views();
  std::map<std::string, torch::Tensor> stored_views(views.begin(), views.end());
  MadeTensors made;  // MXFP4 weights (gpt-oss's published experts): dequantized one at a time as copied
  for (const auto& [stored, tensor] : views) {
    const std::string name = io::language_model_name(stored, spelling);
    if (name.empty() || arch.skipped_tensor(name)) continue;
    if (name == "lm_head.weight" && tied) {
      tied_copy = tensor;
      continue;
    }
    // An MXFP4 pair: X_blocks and X_scales, either of them bytes (mxfp4_weight_shape checks both).
    const auto weight = mxfp4_weight_name(stored);
    auto byte_tensor = [&](const std::string& n) {
      auto it = stored_views.find(n);
      return it != stored_views.end() && it->second.scalar_type() == torch::kByte;
    };
    if (weight && (byte_tensor(mxfp4_blocks_name(*weight)) || byte_tensor(mxfp4_scales_name(*weight)))) {
      const std::string blocks = mxfp4_blocks_name(*weight), scales = mxfp4_scales_name(*weight);
      if (!stored_views.count(blocks) || !stored_views.count(scales))
        fail(set.source(), ": tensor '", stored, "' is half of an MXFP4 weight, but '",
             stored_views.count(blocks) ? scales : blocks, "' is absent; the checkpoint is incomplete: download it again");
      if (stored != blocks) continue;  // the pair is made once, from its blocks
      const std::string target = lofi_name(io::language_model_name(*weight, spelling));
      made[target] = {mxfp4_weight_shape(tensor, stored_views.at(scales), set.source(), target),
                      [b = tensor, s = stored_views.at(scales), source = set.source(), target] {
                        return mxfp4_dequantize(b, s, torch::kBFloat16, source, target);
                      }};
      (*stored_name)[target] = {blocks, scales};
      continue;
    }
    tensors.emplace_back(lofi_name(name), tensor);
    (*stored_name)[lofi_name(name)] = {stored};
  }
  // Streamed: each tensor's mapped pages go once copied, so the model and the file are never both
  // whole in memory (bench/hf_load_memory_bench.cpp measures the peak).
  // A deferred parameter's copy runs later: the release holds what it refers to.
  load_named_tensors(model, tensors, set.source(), {},
                     [files = kept.get(), stored_name](const std::string& name) {
                       for (const auto& stored : stored_name->at(name)) files->release(stored);
                     },
                     deferred, made);
  if (tied_copy.defined()) {
    torch::Tensor embedding = model.token_embedding();
    if (tied_copy.sizes() != embedding.sizes() || !torch::equal(tied_copy.to(embedding.scalar_type()), embedding))
      fail(set.source(), ": lm_head.weight differs from the token embedding, but config.json ties them "
                         "(tie_word_embeddings = true); set it to false if the head is the model's own");
  }
  if (deferred) deferred->keep(std::move(kept));
}

namespace {

// The directory itself: the weights (NAMES' names and shapes, TENSOR(i) each one's values) as
// model.safetensors or shards, config.json from CONFIG (over the source directory's keys) and the
// source's companion files (tokenizer, chat template, generation settings). A source that is a
// vision-language checkpoint gets the model back in its place (model/hf_wrapped.h): named as the
// source names its language model, beside the source's other tensors, unchanged but for the dtype.
std::vector<std::string> write_hf_dir(const LmConfig& lm, std::vector<std::pair<std::string, std::vector<int64_t>>> names,
                                      std::function<torch::Tensor(size_t)> tensor, const std::string& out_dir,
                                      const HfExportOptions& options) {
  const std::string dtype = options.dtype.empty() ? "F32" : options.dtype;
  const std::string torch_dtype = torch_dtype_name(dtype);
  json base = json::object();
  if (!options.source_dir.empty() && is_hf_model_dir(options.source_dir))
    base = json::parse(io::read_text_file((fs::path(options.source_dir) / "config.json").string()), nullptr, false);
  const nlohmann::ordered_json config = hf_config_json(lm, torch_dtype, base);
  std::vector<std::string> kept_dtypes(names.size(), dtype);  // a carried tensor that is not floating point keeps its own
  if (wraps(base, lm.arch)) {
    auto source = std::make_shared<const io::SafetensorsSet>(options.source_dir);
    std::vector<std::string> stored;
    for (const auto& t : source->tensors()) stored.push_back(t.entry->name);
    const io::WrappedNames spelling = io::wrapped_names(stored);
    if (spelling == io::WrappedNames::kNone)
      fail(source->source(), ": config.json describes a \"", base["model_type"].get<std::string>(),
           "\" model, but no tensor is named \"language_model.*\" or \"model.language_model.*\": not the checkpoint it "
           "describes");
    const size_t own = names.size();
    for (auto& [name, shape] : names) name = io::wrapped_name(name, spelling);
    std::vector<const io::SafetensorsSet::Tensor*> carried;
    for (const auto& t : source->tensors())
      if (io::language_model_name(t.entry->name, spelling).empty()) {
        carried.push_back(&t);
        names.emplace_back(t.entry->name, t.entry->shape);
        const bool weight = t.entry->dtype == "F32" || t.entry->dtype == "BF16" || t.entry->dtype == "F16" || t.entry->dtype == "F64";
        kept_dtypes.push_back(weight ? dtype : t.entry->dtype);
      }
    tensor = [own_tensor = std::move(tensor), source, carried, own](size_t i) {
      if (i < own) return own_tensor(i);
      const io::SafetensorsSet::Tensor& t = *carried[i - own];
      torch::Tensor value = t.file->load(*t.entry);
      t.file->release(*t.entry);
      return value;
    };
  }
  std::vector<io::TensorEntry> layout;
  for (size_t i = 0; i < names.size(); ++i) {
    io::TensorEntry e;
    e.name = names[i].first;
    e.dtype = kept_dtypes[i];
    e.shape = names[i].second;
    e.end = static_cast<size_t>(c10::multiply_integers(e.shape)) * io::safetensors_dtype_size(e.dtype);
    layout.push_back(std::move(e));
  }
  io::StagedDir staged(out_dir);
  // transformers refuses safetensors files whose metadata lacks format "pt".
  std::vector<std::string> written = io::write_safetensors_shards(
      staged.path(), layout, options.shard_bytes, {{"format", "pt"}},
      [&](io::SafetensorsWriter& writer, size_t i) {
        const torch::Tensor source = tensor(i), out = source.to(io::dtype_from_safetensors(layout[i].dtype, "--dtype"));
        // F16 holds at most 65504: finite weights past it would be written as Inf. Refused by
        // tensor (the staged directory goes), as a merge's overflow is.
        if (out.scalar_type() == torch::kHalf && source.scalar_type() != torch::kHalf &&
            !torch::isfinite(out).all().item<bool>() && torch::isfinite(source).all().item<bool>())
          fail("export: tensor '", layout[i].name, "' overflows --dtype F16 (its largest magnitude is ",
               source.abs().max().item<double>(), ", F16's 65504); export in BF16 or F32. Nothing was written");
        writer.write(out);
      });
  io::write_file_atomic(staged.path() + "/config.json", config.dump(2) + "\n");
  written.push_back("config.json");
  if (!options.source_dir.empty())
    for (const auto& name : io::hf_companion_files()) {
      const fs::path from = fs::path(options.source_dir) / name;
      if (!fs::exists(from)) continue;
      io::write_file_atomic(staged.path() + "/" + name, io::read_text_file(from.string()));
      written.push_back(name);
    }
  staged.commit();
  for (auto& name : written) name = staged.final_path() + "/" + name;
  return written;
}

}  // namespace

std::vector<std::string> export_hf(const CausalLmImpl& model, const std::string& out_dir, const HfExportOptions& options) {
  // A model carrying LoRA adapters is written dense (each folded into its layer), as PEFT's merge_and_unload.
  const io::NamedTensors weights = merged_lora_weights(model);
  std::vector<std::pair<std::string, std::vector<int64_t>>> names;
  for (const auto& [name, t] : weights) names.emplace_back(name, t.sizes().vec());
  return write_hf_dir(model.config, names, [&](size_t i) { return weights[i].second; }, out_dir, options);
}

std::vector<std::string> export_hf(const LmConfig& config, const io::SafetensorsFile& weights, const std::string& out_dir,
                                   const HfExportOptions& options,
                                   const std::function<void(const std::string&, const torch::Tensor&)>& check) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> names;
  for (const auto& e : weights.entries()) names.emplace_back(e.name, e.shape);
  return write_hf_dir(config, names, [&](size_t i) {
    torch::Tensor t = weights.load(weights.entries()[i]);
    weights.release(weights.entries()[i]);  // its mapped pages: copied out, not kept resident
    if (check) check(names[i].first, t);
    return t;
  }, out_dir, options);
}

}  // namespace lofi::model
