// Typed reads of a Hugging Face config.json, and the table an architecture declares its keys in:
// one line per key (config.json name, the LmConfig field, transformers' default), used both to
// read a config.json and to write one, so the two cannot drift apart.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/model/lm_config.h"

namespace lofi::model {

// A config.json's keys; an absent or null key takes the given fallback (transformers' default).
// Every error is one line naming the file, the key and the value.
class HfKeys {
 public:
  HfKeys(const nlohmann::json& j, std::string source) : j_(j), source_(std::move(source)) {}
  int64_t integer(const std::string& key, int64_t fallback) const;
  // A count or width: an integer in [0, kMaxSize], refused by file and key otherwise.
  int64_t size(const std::string& key, int64_t fallback) const;
  static constexpr int64_t kMaxSize = (int64_t{1} << 31) - 1;
  double number(const std::string& key, double fallback) const;
  bool boolean(const std::string& key, bool fallback) const;
  std::string string(const std::string& key, const std::string& fallback) const;
  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  const nlohmann::json& json() const { return j_; }
  const std::string& source() const { return source_; }
  // KEYS read from J's object at KEY (e.g. "rope_scaling"), naming it as "KEY.sub" in errors.
  HfKeys nested(const std::string& key) const;
  // A setting lofi cannot honour: one line naming the file, the key, the value and WHY.
  [[noreturn]] void unsupported(const std::string& key, const std::string& why) const;
  void require_bool(const std::string& key, bool fallback, bool needed, const std::string& why) const;

 private:
  HfKeys(const nlohmann::json& j, std::string source, std::string prefix)
      : j_(j), source_(std::move(source)), prefix_(std::move(prefix)) {}
  [[noreturn]] void wrong(const std::string& key, const char* expected) const;
  const nlohmann::json& j_;
  std::string source_;
  std::string prefix_;  // "rope_scaling." inside a nested object
};

// One config.json key of an architecture: NAME in config.json is FIELD in LmConfig, DEFAULT when
// absent (transformers' default for that model type).
struct HfKey {
  const char* name;
  LmField field;
  nlohmann::json fallback;
};

// Sets each KEYS field of C from J (typed, defaults for absent keys).
void read_hf_keys(const std::vector<HfKey>& keys, const HfKeys& j, LmConfig& c);
// Hugging Face activation names at KEY ("activation_function", "hidden_act") -> lofi's: relu;
// gelu_new and gelu_pytorch_tanh are the tanh approximation ("gelu"); HF "gelu" is the exact
// erf form ("gelu_erf"); silu and swish are "silu". Others are refused by name.
std::string activation_from_hf(const HfKeys& keys, const std::string& key, const std::string& fallback);
std::string activation_to_hf(const std::string& activation);

// Writes each KEYS field of C into OUT under its config.json name.
void write_hf_keys(const std::vector<HfKey>& keys, const LmConfig& c, nlohmann::ordered_json& out);

}  // namespace lofi::model
