#include "lofi/settings.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include <toml++/toml.h>

#include "lofi/error.h"
#include "lofi/text.h"

namespace lofi {

Setting::Setting(std::string key, SettingTarget target, std::string help)
    : key_(std::move(key)), help_(std::move(help)), target_(target) {}

Setting& Setting::at_least(double min) { return min_ = min, *this; }
Setting& Setting::above(double min) { return above_ = min, *this; }
Setting& Setting::below(double max) { return below_ = max, *this; }
Setting& Setting::at_most(double max) { return max_ = max, *this; }
Setting& Setting::in(double lo, double hi_open) { return min_ = lo, below_ = hi_open, *this; }
Setting& Setting::one_of(std::vector<std::string> choices) { return choices_ = std::move(choices), *this; }
Setting& Setting::free() { return trajectory_ = false, *this; }
Setting& Setting::applies(bool on) { return applies_ = on, *this; }

const char* Setting::type_name() const {
  if (std::holds_alternative<int64_t*>(target_)) return "an integer";
  if (std::holds_alternative<double*>(target_)) return "a number";
  if (std::holds_alternative<bool*>(target_)) return "true or false";
  return "a string";
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

// A rule's bound as people write it: 1, 0.5, 1e-08.
std::string bound_text(double v) { return format_general(v, 6); }

}  // namespace

std::string Setting::text() const {
  if (auto* i = std::get_if<int64_t*>(&target_)) return std::to_string(**i);
  if (auto* d = std::get_if<double*>(&target_)) return shortest_double(**d);
  if (auto* b = std::get_if<bool*>(&target_)) return **b ? "true" : "false";
  return toml_string(*std::get<std::string*>(target_));
}

std::string Setting::violation() const {
  if (const auto* s = std::get_if<std::string*>(&target_)) {
    if (!applies_ || choices_.empty() || std::find(choices_.begin(), choices_.end(), **s) != choices_.end()) return "";
    std::string allowed;
    for (size_t i = 0; i < choices_.size(); ++i)
      allowed += (i == 0 ? "" : i + 1 == choices_.size() ? " or " : ", ") + ("\"" + choices_[i] + "\"");
    return cat(key_, " must be ", allowed, ", found \"", **s, "\"");
  }
  if (std::holds_alternative<bool*>(target_)) return "";
  const double v = std::holds_alternative<int64_t*>(target_) ? static_cast<double>(*std::get<int64_t*>(target_))
                                                              : *std::get<double*>(target_);
  const std::string found = std::holds_alternative<int64_t*>(target_) ? text() : bound_text(v);
  // inf and nan pass range checks (inf > 0) and would only show as a diverged or endless run.
  if (!std::isfinite(v)) return cat(key_, " must be a finite number, found ", found);
  if (!applies_) return "";
  if (min_ && below_ && !(v >= *min_ && v < *below_))
    return cat(key_, " must be in [", bound_text(*min_), ", ", bound_text(*below_), "), found ", found);
  if (min_ && !below_ && v < *min_) return cat(key_, " must be >= ", bound_text(*min_), ", found ", found);
  if (above_ && !(v > *above_)) return cat(key_, " must be > ", bound_text(*above_), ", found ", found);
  if (below_ && !min_ && !(v < *below_)) return cat(key_, " must be < ", bound_text(*below_), ", found ", found);
  if (max_ && !(v <= *max_)) return cat(key_, " must be <= ", bound_text(*max_), ", found ", found);
  return "";
}

Setting& Settings::add(const std::string& name, SettingTarget target, std::string help) {
  list_.emplace_back(prefix_.empty() ? name : prefix_ + "." + name, target, std::move(help));
  return list_.back();
}

Setting& Settings::find(const std::string& key, const std::string& source) {
  for (auto& s : list_)
    if (s.key() == key) return s;
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
  // A key in other letter case, or without its section ("steps" for train.steps).
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  for (const auto& s : list_)
    if (lower(s.key()) == lower(key)) fail(source, ": unknown config key '", key, "'; did you mean '", s.key(), "'? (keys are lower case)");
  if (key.find('.') == std::string::npos) {
    std::string sections;
    for (const auto& s : list_)
      if (const size_t dot = s.key().find('.'); lower(s.key().substr(dot + 1)) == lower(key)) sections += (sections.empty() ? "'" : "' or '") + s.key();
    if (!sections.empty())
      fail(source, ": unknown config key '", key, "'; did you mean ", sections, "'? (keys are section.key, or key under [section] in TOML)");
  }
  const Setting* nearest = nullptr;
  size_t best = 4;  // at most 3 edits
  for (const auto& s : list_)
    if (size_t d = distance(key, s.key()); d < best) best = d, nearest = &s;
  if (nearest) fail(source, ": unknown config key '", key, "'; did you mean '", nearest->key(), "'?");
  std::string known;
  for (const auto& s : list_) known += (known.empty() ? "" : ", ") + s.key();
  fail(source, ": unknown config key '", key, "' (known keys: ", known, ")");
}

void Settings::assign(const std::string& key, const std::string& text) {
  Setting& s = find(key, "--set");
  auto bad = [&] {
    if (errno == ERANGE)
      fail("--set ", key, ": '", text, "' is out of range for ", s.type_name(),
           std::holds_alternative<double*>(s.target()) ? " (a double holds magnitudes from about 2.2e-308 to 1.8e308)"
                                                        : " (a 64-bit integer)");
    fail("--set ", key, ": expects ", s.type_name(), ", found '", text, "'");
  };
  errno = 0;
  char* end = nullptr;
  if (auto* p = std::get_if<int64_t*>(&s.target())) {
    long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end || errno) bad();
    **p = v;
  } else if (auto* d = std::get_if<double*>(&s.target())) {
    double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end || errno) bad();
    **d = v;
  } else if (auto* b = std::get_if<bool*>(&s.target())) {
    if (text != "true" && text != "false") bad();
    **b = text == "true";
  } else {
    std::string value = text;
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    *std::get<std::string*>(s.target()) = value;
  }
}

void Settings::check() const {
  for (const auto& s : list_)
    if (std::string why = s.violation(); !why.empty()) fail("config: ", why);
}

std::string Settings::toml(bool help) const {
  // Written here rather than by toml++'s printer, which spells 6e-4 as 0.00059999999999999995:
  // floats as the shortest text that reads back.
  std::string out, section;
  for (const auto& s : list_) {
    const auto dot = s.key().find('.');
    if (s.key().substr(0, dot) != section) {
      section = s.key().substr(0, dot);
      out += (out.empty() ? "[" : "\n[") + section + "]\n";
    }
    if (help) {
      std::istringstream lines(s.help());
      for (std::string line; std::getline(lines, line);) out += "# " + line + "\n";
    }
    out += s.key().substr(dot + 1) + " = " + s.text() + "\n";
  }
  return out;
}

std::string Settings::reference() const {
  size_t width = 0;
  for (const auto& s : list_) width = std::max(width, s.key().size() + 3 + s.text().size());
  std::string out;
  for (const auto& s : list_) {
    std::string head = s.key() + " = " + s.text();
    std::string help = s.help();
    std::replace(help.begin(), help.end(), '\n', ' ');
    out += "  " + head + std::string(width - head.size() + 2, ' ') + help + "\n";
  }
  return out;
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

std::map<std::string, std::string> toml_values(const std::string& text, const std::string& source) {
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    fail(source, ": invalid TOML: ", e.description());
  }
  std::map<std::string, std::string> out;
  for (const auto& [section, node] : table) {
    const toml::table* keys = node.as_table();
    if (!keys) fail(source, ": expected [section] tables of keys, found '", section.str(), "' outside one");
    for (const auto& [key, value] : *keys) {
      std::ostringstream spelled;
      value.visit([&](const auto& v) { spelled << v; });
      out[std::string(section.str()) + "." + std::string(key.str())] = spelled.str();
    }
  }
  return out;
}

}  // namespace lofi
