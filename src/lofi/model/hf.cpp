#include "lofi/model/hf.h"

#include <filesystem>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors_set.h"
#include "lofi/model/weights.h"

namespace lofi::model {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Typed reads of config.json keys; an absent or null key takes transformers' default.
class Keys {
 public:
  Keys(const json& j, std::string source) : j_(j), source_(std::move(source)) {}
  int64_t integer(const std::string& key, int64_t fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_number_integer()) wrong(key, "an integer");
    return j_[key].get<int64_t>();
  }
  double number(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_number()) wrong(key, "a number");
    return j_[key].get<double>();
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_boolean()) wrong(key, "true or false");
    return j_[key].get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_string()) wrong(key, "a string");
    return j_[key].get<std::string>();
  }
  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  // A setting lofi cannot honour: one line naming the file, the key and the value.
  [[noreturn]] void unsupported(const std::string& key, const std::string& why) const {
    fail(source_, ": \"", key, "\": ", j_.contains(key) ? j_[key].dump() : "(default)", " is not supported (", why, ")");
  }
  void require_bool(const std::string& key, bool fallback, bool needed, const std::string& why) const {
    if (boolean(key, fallback) != needed) unsupported(key, why);
  }

 private:
  [[noreturn]] void wrong(const std::string& key, const char* expected) const {
    fail(source_, ": \"", key, "\" expects ", expected, ", found ", j_[key].dump());
  }
  const json& j_;
  std::string source_;
};

// Hugging Face activation names -> lofi's. gelu_new and gelu_pytorch_tanh are the tanh
// approximation; plain "gelu" is the exact erf form.
std::string activation_from_hf(const Keys& keys, const std::string& fallback) {
  std::string name = keys.string("activation_function", fallback);
  if (name == "relu") return "relu";
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return "gelu";
  if (name == "gelu") return "gelu_erf";
  keys.unsupported("activation_function", "lofi has relu, gelu (exact), gelu_new and gelu_pytorch_tanh");
}

std::string activation_to_hf(const std::string& activation) {
  if (activation == "gelu") return "gelu_new";
  if (activation == "gelu_erf") return "gelu";
  return activation;
}

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

LmConfig lm_config_from_hf(const json& j, const std::string& source) {
  if (!j.is_object()) fail(source, ": expected a JSON object");
  Keys keys(j, source);
  LmConfig c;
  c.arch = keys.string("model_type", "");
  keys.require_bool("tie_word_embeddings", true, true, "lofi ties the output head to the token embedding");
  if (c.arch == "opt") {
    c.n_layer = keys.integer("num_hidden_layers", 12);
    c.n_head = keys.integer("num_attention_heads", 12);
    c.d_model = keys.integer("hidden_size", 768);
    c.d_ff = keys.integer("ffn_dim", 3072);
    c.vocab_size = keys.integer("vocab_size", 50272);
    c.max_seq_len = keys.integer("max_position_embeddings", 2048);
    c.activation = activation_from_hf(keys, "relu");
    c.dropout = keys.number("dropout", 0.1);
    c.attention_dropout = keys.number("attention_dropout", 0.0);
    c.embedding_dropout = 0.0;  // OPTDecoder has none
    c.layer_norm_eps = 1e-5;    // OPT's LayerNorms use torch's default
    c.do_layer_norm_before = keys.boolean("do_layer_norm_before", true);
    c.word_embed_proj_dim = keys.integer("word_embed_proj_dim", c.d_model);
    if (c.word_embed_proj_dim == c.d_model) c.word_embed_proj_dim = 0;
    keys.require_bool("enable_bias", true, true, "lofi's OPT layers always have biases");
    keys.require_bool("layer_norm_elementwise_affine", true, true, "lofi's LayerNorms always have weight and bias");
    keys.require_bool("_remove_final_layer_norm", false, false, "lofi keeps the final LayerNorm of pre-LayerNorm OPT");
    if (keys.number("layerdrop", 0.0) != 0.0) keys.unsupported("layerdrop", "lofi never skips layers");
  } else if (c.arch == "gpt2") {
    c.n_layer = keys.integer("n_layer", 12);
    c.n_head = keys.integer("n_head", 12);
    c.d_model = keys.integer("n_embd", 768);
    c.d_ff = keys.integer("n_inner", 4 * c.d_model);
    c.vocab_size = keys.integer("vocab_size", 50257);
    c.max_seq_len = keys.integer("n_positions", 1024);
    c.activation = activation_from_hf(keys, "gelu_new");
    c.dropout = keys.number("resid_pdrop", 0.1);
    c.attention_dropout = keys.number("attn_pdrop", 0.1);
    c.embedding_dropout = keys.number("embd_pdrop", 0.1);
    c.layer_norm_eps = keys.number("layer_norm_epsilon", 1e-5);
    keys.require_bool("scale_attn_weights", true, true, "lofi scales attention scores by 1/sqrt(head_dim)");
    keys.require_bool("scale_attn_by_inverse_layer_idx", false, false, "lofi does not scale scores by layer index");
    keys.require_bool("add_cross_attention", false, false, "lofi's GPT-2 is decoder-only");
    // reorder_and_upcast_attn only changes how fp16 scores are computed; lofi's attention runs in
    // the weights' dtype, fp32 when training, so either value gives the same model.
  } else {
    fail(source, ": \"model_type\": ", keys.has("model_type") ? j["model_type"].dump() : "(absent)",
         " is not supported (lofi reads \"opt\" and \"gpt2\")");
  }
  check_lm_config(c, source);
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
  auto set_default = [&](const char* key, int64_t value) {
    if (!out.contains(key)) out[key] = value;
  };
  if (c.arch == "opt") {
    // OPT's config has no embedding dropout; it only shapes training, so the exported model
    // computes the same and the rate is left out.
    if (c.layer_norm_eps != 1e-5) fail("export: OPT's LayerNorm epsilon is fixed at 1e-5; model.layer_norm_eps is ", c.layer_norm_eps);
    out["architectures"] = {"OPTForCausalLM"};
    out["model_type"] = "opt";
    out["vocab_size"] = c.vocab_size;
    out["hidden_size"] = c.d_model;
    out["num_hidden_layers"] = c.n_layer;
    out["ffn_dim"] = c.d_ff;
    out["num_attention_heads"] = c.n_head;
    out["max_position_embeddings"] = c.max_seq_len;
    out["activation_function"] = activation_to_hf(c.activation);
    out["do_layer_norm_before"] = c.do_layer_norm_before;
    out["_remove_final_layer_norm"] = false;
    out["word_embed_proj_dim"] = c.word_embed_proj_dim > 0 ? c.word_embed_proj_dim : c.d_model;
    out["dropout"] = c.dropout;
    out["attention_dropout"] = c.attention_dropout;
    out["layerdrop"] = 0.0;
    out["enable_bias"] = true;
    out["layer_norm_elementwise_affine"] = true;
    set_default("pad_token_id", 1);
    set_default("bos_token_id", 2);
    set_default("eos_token_id", 2);
  } else {
    out["architectures"] = {"GPT2LMHeadModel"};
    out["model_type"] = "gpt2";
    out["vocab_size"] = c.vocab_size;
    out["n_embd"] = c.d_model;
    out["n_layer"] = c.n_layer;
    out["n_head"] = c.n_head;
    out["n_inner"] = c.d_ff;
    out["n_positions"] = c.max_seq_len;
    out["activation_function"] = activation_to_hf(c.activation);
    out["resid_pdrop"] = c.dropout;
    out["attn_pdrop"] = c.attention_dropout;
    out["embd_pdrop"] = c.embedding_dropout;
    out["layer_norm_epsilon"] = c.layer_norm_eps;
    out["scale_attn_weights"] = true;
    out["scale_attn_by_inverse_layer_idx"] = false;
    out["reorder_and_upcast_attn"] = false;
    set_default("bos_token_id", 50256);
    set_default("eos_token_id", 50256);
  }
  out["tie_word_embeddings"] = true;
  out["torch_dtype"] = torch_dtype;
  return out;
}

void load_hf_weights(CausalLmImpl& model, const std::string& path) {
  io::SafetensorsSet set(path);
  const bool opt = model.config.arch == "opt";
  io::NamedTensors tensors;
  torch::Tensor lm_head;
  for (auto& [name, tensor] : set.views()) {
    if (name == "lm_head.weight") {
      lm_head = tensor;
      continue;
    }
    // Causal-mask buffers older GPT-2 checkpoints carry; lofi builds the mask itself.
    if (!opt && (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias"))) continue;
    // Hub files of the base model omit the prefix of the LM-head model ("decoder.layers...", "h.0...").
    if (opt && starts_with(name, "decoder.")) tensors.emplace_back("model." + name, tensor);
    else if (!opt && !starts_with(name, "transformer.")) tensors.emplace_back("transformer." + name, tensor);
    else tensors.emplace_back(name, tensor);
  }
  load_named_tensors(model, tensors, set.source());
  if (lm_head.defined()) {
    torch::Tensor embedding = model.tied_embedding();
    if (lm_head.sizes() != embedding.sizes() || !torch::equal(lm_head.to(embedding.scalar_type()), embedding))
      fail(set.source(), ": lm_head.weight differs from the token embedding; lofi ties the head to it (untied heads are not supported)");
  }
}

const std::vector<std::string>& hf_tokenizer_files() {
  static const std::vector<std::string> files{"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                                              "special_tokens_map.json"};
  return files;
}

std::vector<std::string> export_hf(const CausalLmImpl& model, const std::string& out_dir, const HfExportOptions& options) {
  const std::string dtype = options.dtype.empty() ? "F32" : options.dtype;
  const std::string torch_dtype = torch_dtype_name(dtype);
  json base = json::object();
  if (!options.source_dir.empty() && is_hf_model_dir(options.source_dir))
    base = json::parse(io::read_text_file((fs::path(options.source_dir) / "config.json").string()), nullptr, false);
  const nlohmann::ordered_json config = hf_config_json(model.config, torch_dtype, base);

  const io::NamedTensors weights = module_weights(model);
  const torch::Dtype out_dtype = io::dtype_from_safetensors(dtype, "--dtype");
  std::vector<io::TensorEntry> layout;
  for (const auto& [name, t] : weights) {
    io::TensorEntry e;
    e.name = name;
    e.dtype = dtype;
    e.shape = t.sizes().vec();
    e.end = static_cast<size_t>(t.numel()) * c10::elementSize(out_dtype);
    layout.push_back(std::move(e));
  }
  io::StagedDir staged(out_dir);
  // transformers refuses safetensors files whose metadata lacks format "pt".
  std::vector<std::string> written = io::write_safetensors_shards(
      staged.path(), layout, options.shard_bytes, {{"format", "pt"}},
      [&](io::SafetensorsWriter& writer, size_t i) { writer.write(weights[i].second.to(out_dtype)); });
  io::write_file_atomic(staged.path() + "/config.json", config.dump(2) + "\n");
  written.push_back("config.json");
  if (!options.source_dir.empty())
    for (const auto& name : hf_tokenizer_files()) {
      const fs::path from = fs::path(options.source_dir) / name;
      if (!fs::exists(from)) continue;
      io::write_file_atomic(staged.path() + "/" + name, io::read_text_file(from.string()));
      written.push_back(name);
    }
  staged.commit();
  for (auto& name : written) name = staged.final_path() + "/" + name;
  return written;
}

}  // namespace lofi::model
