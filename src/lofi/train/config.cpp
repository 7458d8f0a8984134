#include "lofi/train/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <toml++/toml.h>

#include "lofi/data/token_shards.h"
#include "lofi/error.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/arch.h"
#include "lofi/model/causal_lm.h"
#include "lofi/model/hf.h"

namespace lofi::train {

Settings settings_of(Config& c) {
  Settings s;
  s.section("run", c.run).section("model", c.model).section("data", c.data).section("images", c.images);
  s.section("train", c.train).section("dist", c.dist).section("lora", c.lora);
  return s;
}

std::string config_reference() {
  Config defaults;
  return settings_of(defaults).reference();
}

namespace {

void apply_node(Settings& settings, const toml::node& node, const std::string& key, const std::string& source) {
  const Setting& f = settings.find(key, source);
  bool ok = false;
  if (auto* p = std::get_if<int64_t*>(&f.target())) {
    if (auto v = node.value_exact<int64_t>()) **p = *v, ok = true;
  } else if (auto* d = std::get_if<double*>(&f.target())) {
    if (auto v = node.value<double>(); v && (node.is_floating_point() || node.is_integer())) **d = *v, ok = true;
  } else if (auto* t = std::get_if<std::string*>(&f.target())) {
    if (auto v = node.value_exact<std::string>()) **t = *v, ok = true;
    // A list of names (lora.target = ["q_proj", "v_proj"]) is kept as "q_proj,v_proj", a list of
    // numbers (model.rope_short_factor = [1.0, 1.5]) as "1.0,1.5".
    if (const auto* list = node.as_array(); list && !list->empty() && list->is_homogeneous<std::string>()) {
      std::string joined;
      for (const auto& item : *list) joined += (joined.empty() ? "" : ",") + *item.value<std::string>();
      **t = joined, ok = true;
    } else if (list && !list->empty() && std::all_of(list->begin(), list->end(), [](const toml::node& item) { return item.is_number(); })) {
      std::string joined;
      for (const auto& item : *list) joined += (joined.empty() ? "" : ",") + shortest_double(*item.value<double>());
      **t = joined, ok = true;
    }
  } else if (auto* b = std::get_if<bool*>(&f.target())) {
    if (auto v = node.value_exact<bool>()) **b = *v, ok = true;
  }
  if (!ok && node.is_array() && std::holds_alternative<std::string*>(f.target())) {
    const auto& list = *node.as_array();
    if (list.empty()) fail(source, ": key '", key, "' is an empty list; give at least one name");
    for (size_t i = 0; i < list.size(); ++i)
      if (!list[i].is_string())
        fail(source, ": key '", key, "': item ", i + 1, " of the list is ", list[i].type(),
             "; every item must be a string (a name), or every item a number");
  }
  if (!ok) fail(source, ": key '", key, "' expects ", f.type_name(), ", found ", node.type());
}

void apply_table(Settings& settings, const toml::table& table, const std::string& prefix, const std::string& source) {
  for (const auto& [k, node] : table) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* sub = node.as_table())
      apply_table(settings, *sub, key, source);
    else
      apply_node(settings, node, key, source);
  }
}

}  // namespace

void apply_toml_text(Config& config, const std::string& text, const std::string& source) {
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    fail(source, ":", e.source().begin.line, ": invalid TOML: ", e.description());
  }
  Settings settings = settings_of(config);
  apply_table(settings, table, "", source);
}

void apply_toml_file(Config& config, const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open config file");
  std::stringstream text;
  text << in.rdbuf();
  apply_toml_text(config, text.str(), path);
}

void apply_override(Config& config, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) fail("--set '", assignment, "': expected section.key=value");
  settings_of(config).assign(assignment.substr(0, eq), assignment.substr(eq + 1));
}

namespace {

// The checks that span keys; each key's own range is in its declaration.
void check_model(const ModelConfig& m) {
  auto need = [](bool ok, const auto&... why) {
    if (!ok) fail("config: ", why...);
  };
  if (model::is_lm_arch(m.arch)) {
    need(m.n_head >= 1 && (m.head_dim > 0 || m.d_model % m.n_head == 0), "model.d_model (", m.d_model,
         ") must be divisible by model.n_head (", m.n_head, "), or model.head_dim set");
    model::check_lm_config(lm_config(m), "config: model");
  } else {
    need(m.init.empty() || !model::is_hf_model_dir(m.init),
         "model.init: a Hugging Face language-model directory cannot initialise a \"", m.arch, "\"");
  }
}

}  // namespace

void validate(const Config& c) {
  auto need = [](bool ok, const auto&... why) {
    if (!ok) fail("config: ", why...);
  };
  Config values = c;  // settings_of hands out pointers into a config it may change
  settings_of(values).check();
  need(!c.run.dir.empty(), "run.dir must name a directory, found an empty value");
  check_model(c.model);
  if (!c.lora.enabled()) {
    const model::LoraConfig off;
    for (const auto& [set, key] : std::vector<std::pair<bool, const char*>>{
             {c.lora.alpha != off.alpha, "alpha"}, {c.lora.dropout != off.dropout, "dropout"}, {c.lora.target != off.target, "target"},
             {c.lora.rslora != off.rslora, "rslora"}, {c.lora.modules_to_save != off.modules_to_save, "modules_to_save"}})
      need(!set, "lora.", key, " is set but lora.rank = 0 (no adapters: a full fine-tune); set lora.rank (e.g. 16) to train LoRA adapters");
    need(c.model.dtype == "fp32", "model.dtype = \"", c.model.dtype, "\" is the frozen base's dtype, and a full fine-tune (lora.rank = 0) ",
         "freezes nothing; set lora.rank, or model.dtype = \"fp32\"");
  } else {
    need(c.dist.sync_every == 0, "lora.rank > 0 with dist.sync_every = ", c.dist.sync_every, ": a periodic sync averages the ",
         "factors A and B apart, which is not the average of the adapters; LoRA nodes are merged once at the end, exactly ",
         "(set dist.sync_every = 0)");
  }
  need(c.train.activation_checkpointing == 0 || model::is_lm_arch(c.model.arch),
       "train.activation_checkpointing applies to language models; model.arch = \"", c.model.arch, "\" is not one");
  need(c.data.seq_len >= 1 && c.data.seq_len <= c.model.max_seq_len, "data.seq_len (", c.data.seq_len,
       ") must be in [1, model.max_seq_len = ", c.model.max_seq_len, "]");
  need(c.train.min_lr <= c.train.lr, "need 0 <= train.min_lr <= train.lr, 0 < train.lr");
  need(c.train.device == "auto" || c.train.device == "cpu" || c.train.device == "cuda" || c.train.device.rfind("cuda:", 0) == 0,
       "train.device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:K\", found \"", c.train.device, "\"");
  need(c.train.head_init != "lp" || !model::is_lm_arch(c.model.arch),
       "train.head_init = \"lp\" probes a re-initialised classification head; model.arch = \"", c.model.arch,
       "\" has none (a language model's head is its token embedding). Use train.head_init = \"random\"");
  need(c.dist.node_id >= -1 && c.dist.node_id < c.dist.nodes, "dist.node_id (", c.dist.node_id,
       ") must be -1 or in [0, dist.nodes = ", c.dist.nodes, ")");
  need(c.dist.node_id < 0 || c.dist.sync_every == 0,
       "dist.sync_every needs all nodes in one job; a dist.node_id job cannot reach the others");
  if (c.dist.outer_optimizer == "nesterov") {
    need(c.dist.sync_every > 0, "dist.outer_optimizer = \"nesterov\" steps at each sync of the nodes; set dist.sync_every = H > 0");
    need(c.dist.nodes > 1, "dist.outer_optimizer = \"nesterov\" with dist.nodes = 1: there are no nodes to average; set dist.nodes > 1");
  }
  if (c.dist.warm_start_steps > 0) {
    const int64_t k = c.dist.warm_start_steps;
    need(c.dist.nodes > 1, "dist.warm_start_steps = ", k, " with dist.nodes = 1: the run is one data-parallel node throughout; ",
         "set dist.nodes > 1 (or dist.warm_start_steps = 0)");
    need(c.dist.node_id < 0, "dist.warm_start_steps needs all nodes in one job; a dist.node_id job cannot reach the others");
    need(k < c.train.steps, "dist.warm_start_steps (", k, ") must be below train.steps (", c.train.steps,
         "): the nodes split after it");
    need(c.dist.shard == "none", "dist.warm_start_steps with dist.shard = \"", c.dist.shard, "\" is not built yet; ",
         "use dist.shard = \"none\"");
    need(c.dist.outer_optimizer != "nesterov", "dist.warm_start_steps with dist.outer_optimizer = \"nesterov\" is not built ",
         "yet (DiLoCo's outer step would count the shared start as the nodes' progress)");
  }
  need(c.dist.reduce_dtype == "fp32" || c.dist.overlap, "dist.reduce_dtype = \"", c.dist.reduce_dtype, "\" reduces through the ",
       "gradient buckets; dist.overlap = false (one fp32 all-reduce after backward) needs dist.reduce_dtype = \"fp32\"");
  need(c.dist.shard == "none" || c.dist.overlap, "dist.shard = \"", c.dist.shard, "\" runs its collectives bucket by bucket ",
       "during backward; dist.overlap = false (one all-reduce after backward) works with dist.shard = \"none\" only");
  if (c.dist.shard == "full") {
    need(!c.lora.enabled(), "dist.shard = \"full\" shards a full fine-tune's parameters; a LoRA run (lora.rank = ", c.lora.rank,
         ") trains small adapters on a frozen base it does not shard: use dist.shard = \"optimizer\" or \"none\"");
    need(c.dist.sync_every == 0, "dist.shard = \"full\" with dist.sync_every = ", c.dist.sync_every, " is not built yet (the ",
         "periodic sync averages whole weights): use dist.shard = \"gradients\"");
  }
  if (c.train.param_dtype == "bf16") {
    need(c.train.precision == "bf16", "train.param_dtype = \"bf16\" computes in bf16 under autocast (norms and softmax in fp32); ",
         "set train.precision = \"bf16\" too");
    need(!c.lora.enabled(), "train.param_dtype = \"bf16\" holds a full fine-tune's weights in bf16; a LoRA run (lora.rank = ",
         c.lora.rank, ") keeps its small adapters in fp32 over a model.dtype base: leave train.param_dtype = \"fp32\"");
    need(c.dist.sync_every == 0, "train.param_dtype = \"bf16\" with dist.sync_every = ", c.dist.sync_every,
         " is not built yet (the periodic sync averages the weights, not their fp32 masters): use train.param_dtype = \"fp32\"");
  }
  need(c.dist.min_nodes >= 0 && c.dist.min_nodes <= c.dist.nodes, "dist.min_nodes must be in [0, dist.nodes = ",
       c.dist.nodes, "], found ", c.dist.min_nodes);
  need(c.train.batch_size % c.dist.nodes == 0, "train.batch_size (", c.train.batch_size,
       ") must be divisible by dist.nodes (", c.dist.nodes, "): each node uses batch_size / nodes");
}

void check_training_data(const Config& c) {
  if (c.dist.data_split == "shard" && c.dist.nodes > 1) {
    // Nodes' slices of a file listed twice hold the same tokens: not the disjoint data shard promises.
    const std::vector<std::string> files = data::split_paths(c.data.train);
    std::map<std::string, size_t> seen;
    for (size_t i = 0; i < files.size(); ++i) {
      std::error_code ec;
      const std::filesystem::path same = std::filesystem::weakly_canonical(files[i], ec);
      const auto [it, fresh] = seen.emplace(ec ? files[i] : same.string(), i);
      if (!fresh)
        fail("data.train lists ", files[i], " twice (items ", it->second + 1, " and ", i + 1, "): under dist.data_split = ",
             "\"shard\" each node takes a disjoint slice of the tokens, and two slices would hold the same ones; list each file once");
    }
  }
}

std::vector<std::string> trajectory_changes(const Config& was, const Config& now) {
  // Keys declared free() leave the trajectory as it is (where files go, how often the run reports,
  // saves and evaluates, which device and precision compute it, how the workers talk, model.init: a
  // resumed run's weights come from its checkpoint); a key that applies in neither run (the probe's
  // steps when neither probes) had no effect on either.
  Config a = was, b = now;
  Settings sa = settings_of(a), sb = settings_of(b);
  std::vector<std::string> changes;
  for (size_t i = 0; i < sa.all().size(); ++i) {
    const Setting &x = sa.all()[i], &y = sb.all()[i];
    if (!x.changes_trajectory() || (!x.applies() && !y.applies())) continue;
    if (x.text() != y.text()) changes.push_back(x.key() + " = " + x.text() + " -> " + y.text());
  }
  // A LoRA run's checkpoint holds the adapters only: its frozen base is read from model.init again,
  // so another base changes what the adapters train on.
  if ((was.lora.enabled() || now.lora.enabled()) && was.model.init != now.model.init)
    changes.push_back("model.init = \"" + was.model.init + "\" -> \"" + now.model.init +
                      "\" (a LoRA run's frozen base, read again on resume)");
  return changes;
}

std::vector<std::string> trajectory_changes(const std::string& was_toml, const std::string& was_source, const std::string& now_toml,
                                            const std::string& now_source) {
  Config was, now;
  apply_toml_text(was, was_toml, was_source + " (lofi.config)");
  apply_toml_text(now, now_toml, now_source + " (lofi.config)");
  return trajectory_changes(was, now);
}

model::LmConfig lm_config(const ModelConfig& c) {
  model::LmConfig m = c;
  if (m.attention_dropout < 0) m.attention_dropout = c.dropout;
  if (m.embedding_dropout < 0) m.embedding_dropout = c.dropout;
  return m;
}

void apply_hf_init(ModelConfig& c) {
  if (c.init.empty() || !model::is_hf_model_dir(c.init)) return;
  static_cast<model::LmConfig&>(c) = model::read_hf_config(c.init);
}

std::string to_toml(const Config& config, bool help) {
  Config values = config;
  return settings_of(values).toml(help);
}

namespace {

// The [model] keys of CONFIG as TOML value texts.
std::map<std::string, std::string> model_values(const Config& config) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : toml_values(to_toml(config), "config"))
    if (key.rfind("model.", 0) == 0) out[key.substr(6)] = value;
  return out;
}

// model.init a Hugging Face directory: its config.json gives the model (apply_hf_init). A model.*
// key the user set to something else (in PATH or a --set) is honoured where it is a fine-tuning
// choice (the dropouts) and refused by name where it is the pretrained model's shape, never
// dropped silently.
void reconcile_with_hf_init(Config& config, const std::string& path, const std::vector<std::string>& overrides) {
  Config asked = config;  // the Hugging Face model, then what the user named on top of it
  if (!path.empty()) apply_toml_file(asked, path);
  for (const auto& o : overrides) apply_override(asked, o);
  const auto pretrained = model_values(config), named = model_values(asked);
  for (const auto& [key, value] : named) {
    const auto it = pretrained.find(key);
    if (it != pretrained.end() && it->second == value) continue;
    if (key == "dropout" || key == "attention_dropout" || key == "embedding_dropout") {
      apply_override(config, "model." + key + "=" + value);
      continue;
    }
    fail("model.", key, " = ", value, " differs from what model.init's config.json gives (", it == pretrained.end() ? "nothing" : it->second,
         "): a pretrained model's shape comes from ", config.model.init, "/config.json; leave model.", key,
         " out (the dropouts may be set)");
  }
}

}  // namespace

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  Config config;
  if (!path.empty()) apply_toml_file(config, path);
  for (const auto& o : overrides) apply_override(config, o);
  if (!config.model.init.empty() && model::is_hf_model_dir(config.model.init)) {
    apply_hf_init(config.model);
    reconcile_with_hf_init(config, path, overrides);
  }
  validate(config);
  return config;
}

std::string pretrained_source(const std::string& checkpoint) {
  io::SafetensorsFile file(checkpoint);
  auto it = file.metadata().find("lofi.config");
  if (it == file.metadata().end()) return "";
  Config as_run;
  apply_toml_text(as_run, it->second, checkpoint + " (lofi.config)");
  return as_run.model.init;
}

Config config_from_checkpoint(const std::string& path) {
  io::SafetensorsFile file(path);
  Config config;
  auto it = file.metadata().find("lofi.config");
  if (it == file.metadata().end())
    fail(path, ": no lofi.config in its metadata; give the model's shape with --config or --set model.*");
  apply_toml_text(config, it->second, path + " (lofi.config)");
  config.model.init = path;
  return config;
}

Config config_for_model(const std::string& path, const std::string& config_path, const std::vector<std::string>& sets) {
  Config config;
  // A pretrained model as published, or PEFT's adapter of one: the config.json gives the shape.
  std::string hf_dir = path;
  if (std::filesystem::is_directory(path) && io::is_lora_adapter(path)) {
    hf_dir = io::read_lora_adapter(path).spec.base_model;
    if (!model::is_hf_model_dir(hf_dir))
      fail(path, ": its base model \"", hf_dir, "\" (base_model_name_or_path in adapter_config.json) is not a local Hugging ",
           "Face directory; lofi downloads nothing: write the base's local path there");
  }
  if (model::is_hf_model_dir(hf_dir)) {
    config.model.init = hf_dir;
    apply_hf_init(config.model);
    config.data.seq_len = std::min(config.data.seq_len, config.model.max_seq_len);  // no run chose one: fit the model
  } else {
    config = config_path.empty() ? config_from_checkpoint(path) : load_config(config_path, {});
  }
  for (const auto& s : sets) apply_override(config, s);
  config.model.init = path;
  validate(config);
  return config;
}

}  // namespace lofi::train
