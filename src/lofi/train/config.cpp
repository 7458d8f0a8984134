#include "lofi/train/config.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <toml++/toml.h>

#include "lofi/error.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/arch.h"
#include "lofi/model/causal_lm.h"
#include "lofi/model/hf.h"

namespace lofi::train {

std::vector<ConfigField> config_fields(Config& c) {
  std::vector<ConfigField> fields{{"run.dir", &c.run.dir}};
  model::LmConfig& lm = c.model;
  for (const auto& k : model::lm_config_keys())
    std::visit([&](auto member) { fields.push_back({std::string("model.") + k.key, &(lm.*member)}); }, k.field);
  std::vector<ConfigField> rest{
      {"model.init", &c.model.init},
      {"model.preset", &c.model.preset},
      {"model.image_size", &c.model.image_size},
      {"model.num_classes", &c.model.num_classes},
      {"model.drop_path", &c.model.drop_path},
      {"data.train", &c.data.train},
      {"data.val", &c.data.val},
      {"data.seq_len", &c.data.seq_len},
      {"data.format", &c.data.format},
      {"images.scale_min", &c.images.scale_min},
      {"images.hflip", &c.images.hflip},
      {"images.color_jitter", &c.images.color_jitter},
      {"images.mixup", &c.images.mixup},
      {"images.cutmix", &c.images.cutmix},
      {"images.mix_prob", &c.images.mix_prob},
      {"images.label_smoothing", &c.images.label_smoothing},
      {"images.crop_pct", &c.images.crop_pct},
      {"images.interpolation", &c.images.interpolation},
      {"images.on_bad_image", &c.images.on_bad_image},
      {"images.loader_threads", &c.images.loader_threads},
      {"images.prefetch", &c.images.prefetch},
      {"train.steps", &c.train.steps},
      {"train.batch_size", &c.train.batch_size},
      {"train.grad_accum", &c.train.grad_accum},
      {"train.lr", &c.train.lr},
      {"train.min_lr", &c.train.min_lr},
      {"train.warmup_steps", &c.train.warmup_steps},
      {"train.weight_decay", &c.train.weight_decay},
      {"train.beta1", &c.train.beta1},
      {"train.beta2", &c.train.beta2},
      {"train.eps", &c.train.eps},
      {"train.grad_clip", &c.train.grad_clip},
      {"train.seed", &c.train.seed},
      {"train.log_every", &c.train.log_every},
      {"train.tensorboard", &c.train.tensorboard},
      {"train.profile_steps", &c.train.profile_steps},
      {"train.ckpt_every", &c.train.ckpt_every},
      {"train.eval_every", &c.train.eval_every},
      {"train.eval_batches", &c.train.eval_batches},
      {"train.threads", &c.train.threads},
      {"train.device", &c.train.device},
      {"train.precision", &c.train.precision},
      {"train.skip_nonfinite", &c.train.skip_nonfinite},
      {"train.keep_checkpoints", &c.train.keep_checkpoints},
      {"train.head_init", &c.train.head_init},
      {"train.lp_steps", &c.train.lp_steps},
      {"train.lp_lr", &c.train.lp_lr},
      {"dist.nodes", &c.dist.nodes},
      {"dist.node_id", &c.dist.node_id},
      {"dist.data_split", &c.dist.data_split},
      {"dist.sync_every", &c.dist.sync_every},
      {"dist.outer_optimizer", &c.dist.outer_optimizer},
      {"dist.outer_lr", &c.dist.outer_lr},
      {"dist.outer_momentum", &c.dist.outer_momentum},
      {"dist.overlap", &c.dist.overlap},
      {"dist.bucket_mb", &c.dist.bucket_mb},
      {"dist.timeout_s", &c.dist.timeout_s},
      {"dist.min_nodes", &c.dist.min_nodes},
      {"dist.bind", &c.dist.bind},
  };
  fields.insert(fields.end(), rest.begin(), rest.end());
  return fields;
}

namespace {

ConfigField& find_field(std::vector<ConfigField>& fields, const std::string& key, const std::string& source) {
  for (auto& f : fields)
    if (f.key == key) return f;
  // The nearest key by edit distance, when it is near enough to be a slip.
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
        diagonal = up;
      }
    }
    return row[b.size()];
  };
  const ConfigField* nearest = nullptr;
  size_t best = 4;  // at most 3 edits
  for (const auto& f : fields)
    if (size_t d = distance(key, f.key); d < best) best = d, nearest = &f;
  if (nearest) fail(source, ": unknown config key '", key, "'; did you mean '", nearest->key, "'?");
  std::string known;
  for (const auto& f : fields) known += (known.empty() ? "" : ", ") + f.key;
  fail(source, ": unknown config key '", key, "' (known keys: ", known, ")");
}

const char* type_name(const ConfigField& f) {
  if (std::holds_alternative<int64_t*>(f.target)) return "an integer";
  if (std::holds_alternative<double*>(f.target)) return "a number";
  if (std::holds_alternative<bool*>(f.target)) return "true or false";
  return "a string";
}

void apply_node(std::vector<ConfigField>& fields, const toml::node& node, const std::string& key,
                const std::string& source) {
  ConfigField& f = find_field(fields, key, source);
  bool ok = false;
  if (auto** p = std::get_if<int64_t*>(&f.target)) {
    if (auto v = node.value_exact<int64_t>()) **p = *v, ok = true;
  } else if (auto** d = std::get_if<double*>(&f.target)) {
    if (auto v = node.value<double>(); v && (node.is_floating_point() || node.is_integer())) **d = *v, ok = true;
  } else if (auto** s = std::get_if<std::string*>(&f.target)) {
    if (auto v = node.value_exact<std::string>()) **s = *v, ok = true;
  } else if (auto** b = std::get_if<bool*>(&f.target)) {
    if (auto v = node.value_exact<bool>()) **b = *v, ok = true;
  }
  if (!ok) fail(source, ": key '", key, "' expects ", type_name(f), ", found ", node.type());
}

void apply_table(std::vector<ConfigField>& fields, const toml::table& table, const std::string& prefix,
                 const std::string& source) {
  for (const auto& [k, node] : table) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* sub = node.as_table())
      apply_table(fields, *sub, key, source);
    else
      apply_node(fields, node, key, source);
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
  auto fields = config_fields(config);
  apply_table(fields, table, "", source);
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
  std::string key = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  auto fields = config_fields(config);
  ConfigField& f = find_field(fields, key, "--set");
  auto bad = [&] { fail("--set ", key, ": expects ", type_name(f), ", found '", value, "'"); };
  errno = 0;
  char* end = nullptr;
  if (auto** p = std::get_if<int64_t*>(&f.target)) {
    long long v = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end || errno) bad();
    **p = v;
  } else if (auto** d = std::get_if<double*>(&f.target)) {
    double v = std::strtod(value.c_str(), &end);
    if (value.empty() || *end || errno) bad();
    **d = v;
  } else if (auto** b = std::get_if<bool*>(&f.target)) {
    if (value != "true" && value != "false") bad();
    **b = value == "true";
  } else {
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    *std::get<std::string*>(f.target) = value;
  }
}

void validate(const Config& c) {
  auto need = [](bool ok, const auto&... why) {
    if (!ok) fail("config: ", why...);
  };
  // Every number finite: inf and nan pass the range checks below (inf > 0) and would only show as
  // a diverged or endless run.
  Config fields_of = c;  // config_fields hands out pointers into a config it may change
  for (const auto& field : config_fields(fields_of))
    if (const auto* v = std::get_if<double*>(&field.target); v && !std::isfinite(**v))
      fail("config: ", field.key, " must be a finite number, found ", **v);
  need(!c.run.dir.empty(), "run.dir must name a directory, found an empty value");
  need(c.model.image_size >= 0 && c.model.num_classes >= 0, "model.image_size and model.num_classes must be >= 0");
  need(c.model.drop_path >= 0 && c.model.drop_path < 1, "model.drop_path must be in [0, 1), found ", c.model.drop_path);
  need(c.images.loader_threads >= 1 && c.images.prefetch >= 1, "images.loader_threads and images.prefetch must be >= 1");
  need(c.model.dropout >= 0 && c.model.dropout < 1, "model.dropout must be in [0, 1)");
  need(c.model.attention_dropout < 1 && c.model.embedding_dropout < 1,
       "model.attention_dropout and model.embedding_dropout must be below 1");
  if (model::is_lm_arch(c.model.arch)) {
    need(c.model.n_head >= 1 && (c.model.head_dim > 0 || c.model.d_model % c.model.n_head == 0), "model.d_model (",
         c.model.d_model, ") must be divisible by model.n_head (", c.model.n_head, "), or model.head_dim set");
    model::check_lm_config(lm_config(c.model), "config: model");
  } else {
    need(c.model.init.empty() || !model::is_hf_model_dir(c.model.init), "model.init: a Hugging Face language-model directory cannot initialise a \"",
         c.model.arch, "\"");
  }
  need(c.data.seq_len >= 1 && c.data.seq_len <= c.model.max_seq_len, "data.seq_len (", c.data.seq_len,
       ") must be in [1, model.max_seq_len = ", c.model.max_seq_len, "]");
  need(c.dist.data_split == "shuffle" || c.dist.data_split == "shard",
       "dist.data_split must be \"shuffle\" or \"shard\", found \"", c.dist.data_split, "\"");
  need(c.train.steps >= 1, "train.steps must be >= 1");
  need(c.train.batch_size >= 1, "train.batch_size must be >= 1");
  need(c.train.grad_accum >= 1, "train.grad_accum must be >= 1");
  need(c.train.lr > 0 && c.train.min_lr >= 0 && c.train.min_lr <= c.train.lr, "need 0 <= train.min_lr <= train.lr, 0 < train.lr");
  need(c.train.warmup_steps >= 0, "train.warmup_steps must be >= 0");
  need(c.train.log_every >= 1, "train.log_every must be >= 1");
  need(c.train.profile_steps >= 0, "train.profile_steps must be >= 0, found ", c.train.profile_steps);
  need(c.train.ckpt_every >= 0 && c.train.eval_every >= 0, "train.ckpt_every and train.eval_every must be >= 0");
  need(c.train.threads >= 0, "train.threads must be >= 0");
  need(c.train.device == "auto" || c.train.device == "cpu" || c.train.device == "cuda" || c.train.device.rfind("cuda:", 0) == 0,
       "train.device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:K\", found \"", c.train.device, "\"");
  need(c.train.precision == "fp32" || c.train.precision == "bf16", "train.precision must be \"fp32\" or \"bf16\", found \"",
       c.train.precision, "\"");
  need(c.train.eval_batches >= 1, "train.eval_batches must be >= 1, found ", c.train.eval_batches);
  need(c.train.head_init == "random" || c.train.head_init == "lp", "train.head_init must be \"random\" or \"lp\", found \"",
       c.train.head_init, "\"");
  need(c.train.head_init != "lp" || (c.train.lp_steps >= 1 && c.train.lp_lr > 0),
       "train.head_init = \"lp\" needs train.lp_steps >= 1 and train.lp_lr > 0");
  need(c.train.head_init != "lp" || !model::is_lm_arch(c.model.arch),
       "train.head_init = \"lp\" probes a re-initialised classification head; model.arch = \"", c.model.arch,
       "\" has none (a language model's head is its token embedding). Use train.head_init = \"random\"");
  need(c.dist.nodes >= 1, "dist.nodes must be >= 1, found ", c.dist.nodes);
  need(c.dist.node_id >= -1 && c.dist.node_id < c.dist.nodes, "dist.node_id (", c.dist.node_id,
       ") must be -1 or in [0, dist.nodes = ", c.dist.nodes, ")");
  need(c.dist.sync_every >= 0, "dist.sync_every must be >= 0");
  need(c.dist.node_id < 0 || c.dist.sync_every == 0,
       "dist.sync_every needs all nodes in one job; a dist.node_id job cannot reach the others");
  need(c.dist.outer_optimizer == "average" || c.dist.outer_optimizer == "nesterov",
       "dist.outer_optimizer must be \"average\" or \"nesterov\", found \"", c.dist.outer_optimizer, "\"");
  if (c.dist.outer_optimizer == "nesterov") {
    need(c.dist.sync_every > 0, "dist.outer_optimizer = \"nesterov\" steps at each sync of the nodes; set dist.sync_every = H > 0");
    need(c.dist.nodes > 1, "dist.outer_optimizer = \"nesterov\" with dist.nodes = 1: there are no nodes to average; set dist.nodes > 1");
    need(c.dist.outer_lr > 0, "dist.outer_lr must be > 0, found ", c.dist.outer_lr);
    need(c.dist.outer_momentum >= 0 && c.dist.outer_momentum < 1, "dist.outer_momentum must be in [0, 1), found ",
         c.dist.outer_momentum);
  }
  need(c.dist.timeout_s > 0, "dist.timeout_s must be > 0");
  need(c.dist.min_nodes >= 0 && c.dist.min_nodes <= c.dist.nodes, "dist.min_nodes must be in [0, dist.nodes = ",
       c.dist.nodes, "], found ", c.dist.min_nodes);
  need(c.train.skip_nonfinite >= 0 && c.train.keep_checkpoints >= 0,
       "train.skip_nonfinite and train.keep_checkpoints must be >= 0");
  need(c.data.format == "auto" || c.data.format == "llm.c" || c.data.format == "raw-u16",
       "data.format must be \"auto\", \"llm.c\" or \"raw-u16\", found \"", c.data.format, "\"");
  need(c.dist.bucket_mb > 0, "dist.bucket_mb must be > 0");
  need(c.train.batch_size % c.dist.nodes == 0, "train.batch_size (", c.train.batch_size,
       ") must be divisible by dist.nodes (", c.dist.nodes, "): each node uses batch_size / nodes");
}

std::vector<std::string> trajectory_changes(const Config& was, const Config& now) {
  // Keys that leave the trajectory as it is: where files go, how often the run reports, saves and
  // evaluates, which device and precision compute it (resuming across them is supported), how the
  // workers talk, and model.init (a resumed run's weights come from its checkpoint).
  static const std::vector<std::string> kFree = {
      "run.dir", "model.init", "data.val", "data.format", "images.on_bad_image", "images.loader_threads",
      "images.prefetch", "train.log_every", "train.tensorboard", "train.profile_steps", "train.ckpt_every", "train.eval_every", "train.eval_batches",
      "train.threads", "train.device", "train.precision", "train.skip_nonfinite", "train.keep_checkpoints",
      "dist.node_id", "dist.overlap", "dist.bucket_mb", "dist.timeout_s", "dist.min_nodes", "dist.bind"};
  Config a = was, b = now;
  // Settings of a mode that is off in both runs had no effect on either.
  if (a.train.head_init != "lp" && b.train.head_init != "lp") b.train.lp_steps = a.train.lp_steps, b.train.lp_lr = a.train.lp_lr;
  if (a.dist.outer_optimizer != "nesterov" && b.dist.outer_optimizer != "nesterov")
    b.dist.outer_lr = a.dist.outer_lr, b.dist.outer_momentum = a.dist.outer_momentum;
  auto fa = config_fields(a), fb = config_fields(b);
  auto text = [](const ConfigField& f) {
    return std::visit([](auto* p) {
      using T = std::remove_pointer_t<decltype(p)>;
      std::ostringstream out;
      if constexpr (std::is_same_v<T, std::string>) out << '"' << *p << '"';
      else if constexpr (std::is_same_v<T, double>) out << shortest_double(*p);
      else out << std::boolalpha << *p;
      return out.str();
    }, f.target);
  };
  std::vector<std::string> changes;
  for (size_t i = 0; i < fa.size(); ++i) {
    if (std::find(kFree.begin(), kFree.end(), fa[i].key) != kFree.end()) continue;
    const std::string x = text(fa[i]), y = text(fb[i]);
    if (x != y) changes.push_back(fa[i].key + " = " + x + " -> " + y);
  }
  return changes;
}

std::vector<std::string> trajectory_changes(const std::string& was_toml, const std::string& now_toml,
                                            const std::string& source) {
  Config was, now;
  apply_toml_text(was, was_toml, source + " (lofi.config)");
  apply_toml_text(now, now_toml, source + " (lofi.config)");
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

std::string shortest_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // The shortest digits that read back to V, laid out as Python's repr lays them out: positional
  // for exponents in [-4, 16), scientific beyond (6e-4 -> "0.0006", 1e30 -> "1e+30").
  char buf[400];
  const std::string scientific(buf, std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific).ptr);
  const int exponent = std::stoi(scientific.substr(scientific.find('e') + 1));
  std::string text = exponent >= -4 && exponent < 16
                         ? std::string(buf, std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed).ptr)
                         : scientific;
  if (exponent < -4 || exponent >= 16) {  // "1e+30" rather than "1.e+30" or "1e+030"
    const size_t e = text.find('e');
    std::string mantissa = text.substr(0, e), power = text.substr(e + 1);
    const char sign = power[0];
    power = power.substr(1);
    while (power.size() > 1 && power[0] == '0') power.erase(0, 1);
    text = mantissa + "e" + sign + power;
  }
  if (text.find_first_of(".e") == std::string::npos) text += ".0";  // stays a float in TOML
  return text;
}

namespace {

// A TOML basic string.
std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof(esc), "\\u%04x", c);
      out += esc;
    } else out += static_cast<char>(c);
  }
  return out + "\"";
}

}  // namespace

std::string to_toml(const Config& config) {
  // Written here rather than by toml++'s printer, which spells 6e-4 as 0.00059999999999999995:
  // sections and keys in config_fields() order, floats as the shortest text that reads back.
  Config copy = config;
  std::string out, section;
  for (const auto& f : config_fields(copy)) {
    const auto dot = f.key.find('.');
    if (f.key.substr(0, dot) != section) {
      section = f.key.substr(0, dot);
      out += (out.empty() ? "[" : "\n[") + section + "]\n";
    }
    out += f.key.substr(dot + 1) + " = ";
    if (auto* i = std::get_if<int64_t*>(&f.target)) out += std::to_string(**i);
    else if (auto* d = std::get_if<double*>(&f.target)) out += shortest_double(**d);
    else if (auto* b = std::get_if<bool*>(&f.target)) out += **b ? "true" : "false";
    else out += toml_string(*std::get<std::string*>(f.target));
    out += "\n";
  }
  return out;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  Config config;
  if (!path.empty()) apply_toml_file(config, path);
  for (const auto& o : overrides) apply_override(config, o);
  apply_hf_init(config.model);
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

}  // namespace lofi::train
