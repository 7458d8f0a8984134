#include "lofi/model/hf_keys.h"

#include "lofi/error.h"

namespace lofi::model {
using json = nlohmann::json;

int64_t HfKeys::integer(const std::string& key, int64_t fallback) const {
  if (!has(key)) return fallback;
  if (!j_[key].is_number_integer()) wrong(key, "an integer");
  return j_[key].get<int64_t>();
}

int64_t HfKeys::size(const std::string& key, int64_t fallback) const {
  const int64_t v = integer(key, fallback);
  if (v < 0 || v > kMaxSize)
    fail(source_, ": ", prefix_, key, " = ", v, " is not a size lofi can build (expected 0 to ", kMaxSize, "); is this config.json damaged?");
  return v;
}

double HfKeys::number(const std::string& key, double fallback) const {
  if (!has(key)) return fallback;
  if (!j_[key].is_number()) wrong(key, "a number");
  return j_[key].get<double>();
}

bool HfKeys::boolean(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  if (!j_[key].is_boolean()) wrong(key, "true or false");
  return j_[key].get<bool>();
}

std::string HfKeys::string(const std::string& key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  if (!j_[key].is_string()) wrong(key, "a string");
  return j_[key].get<std::string>();
}

HfKeys HfKeys::nested(const std::string& key) const {
  static const nlohmann::json empty = nlohmann::json::object();
  if (!has(key)) return HfKeys(empty, source_, prefix_ + key + ".");
  if (!j_[key].is_object()) wrong(key, "an object");
  return HfKeys(j_[key], source_, prefix_ + key + ".");
}

void HfKeys::unsupported(const std::string& key, const std::string& why) const {
  fail(source_, ": \"", prefix_, key, "\": ", j_.contains(key) ? j_[key].dump() : "(default)", " is not supported (", why,
       ")");
}

void HfKeys::require_bool(const std::string& key, bool fallback, bool needed, const std::string& why) const {
  if (boolean(key, fallback) != needed) unsupported(key, why);
}

void HfKeys::wrong(const std::string& key, const char* expected) const {
  fail(source_, ": \"", prefix_, key, "\" expects ", expected, ", found ", j_[key].dump());
}

void read_hf_keys(const std::vector<HfKey>& keys, const HfKeys& j, LmConfig& c) {
  for (const auto& k : keys)
    std::visit(
        [&](auto member) {
          using T = std::remove_reference_t<decltype(c.*member)>;
          if constexpr (std::is_same_v<T, int64_t>) c.*member = j.size(k.name, k.fallback.template get<int64_t>());
          else if constexpr (std::is_same_v<T, double>) c.*member = j.number(k.name, k.fallback.template get<double>());
          else if constexpr (std::is_same_v<T, bool>) c.*member = j.boolean(k.name, k.fallback.template get<bool>());
          else c.*member = j.string(k.name, k.fallback.template get<std::string>());
        },
        k.field);
}

std::string activation_from_hf(const HfKeys& keys, const std::string& key, const std::string& fallback) {
  const std::string name = keys.string(key, fallback);
  if (name == "relu") return "relu";
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return "gelu";
  if (name == "gelu") return "gelu_erf";
  if (name == "silu" || name == "swish") return "silu";
  keys.unsupported(key, "lofi has relu, gelu (exact), gelu_new, gelu_pytorch_tanh and silu");
}

std::string activation_to_hf(const std::string& activation) {
  if (activation == "gelu") return "gelu_new";
  if (activation == "gelu_erf") return "gelu";
  return activation;
}

void write_hf_keys(const std::vector<HfKey>& keys, const LmConfig& c, nlohmann::ordered_json& out) {
  for (const auto& k : keys) std::visit([&](auto member) { out[k.name] = c.*member; }, k.field);
}

}  // namespace lofi::model
