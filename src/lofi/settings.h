// A component's config section, declared once. A config struct keeps its values as plain members
// with their defaults, beside a declare(Settings&) that names each member once: its key, its help,
// the range it must lie in, and whether it changes what training computes. That one declaration
// serves the TOML reader, `--set`, validation messages, `--help`, `--print-config` and the
// comparison a resume or a merge makes (the shape of gemma.cpp's ForEach and of torchtitan's config
// per component). A new key is one member and one declare line in the component's own header.
//
//   struct DistConfig {
//     int64_t nodes = 1;
//     void declare(Settings& s) { s(nodes, "nodes", "N: 1 is the baseline, N > 1 is lo-fi").at_least(1); }
//   };
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace lofi {

using SettingTarget = std::variant<int64_t*, double*, std::string*, bool*>;

class Setting {
 public:
  Setting(std::string key, SettingTarget target, std::string help);

  // Rules, checked by check(): "KEY must be >= MIN, found X" and the like. Numbers must also be finite.
  Setting& at_least(double min);
  Setting& above(double min);                // > MIN
  Setting& below(double max);                // < MAX
  Setting& at_most(double max);              // <= MAX
  Setting& in(double lo, double hi_open);    // [LO, HI)
  Setting& one_of(std::vector<std::string> choices);
  // Where files go, how the run reports, checkpoints and evaluates, what it runs on: a resumed run
  // or a merge may change it without changing what training computes.
  Setting& free();
  // The setting matters only when ON (e.g. train.lp_steps when train.head_init = "lp"): its rules
  // are checked, and a change of it counts, only then.
  Setting& applies(bool on);

  const std::string& key() const { return key_; }
  const std::string& help() const { return help_; }
  const SettingTarget& target() const { return target_; }
  bool changes_trajectory() const { return trajectory_; }
  bool applies() const { return applies_; }
  const std::vector<std::string>& choices() const { return choices_; }
  // "an integer", "a number", "true or false", "a string".
  const char* type_name() const;
  // The value as TOML writes it: 3, 0.0006, true, "text".
  std::string text() const;
  // The first rule the value breaks, as "KEY must be ..., found ..."; empty when it keeps them all.
  // A number must be finite even where the setting does not apply; its other rules apply only there.
  std::string violation() const;

 private:
  std::string key_, help_;
  SettingTarget target_;
  std::optional<double> min_, above_, below_, max_;
  std::vector<std::string> choices_;
  bool trajectory_ = true, applies_ = true;
};

// The settings of a whole config: sections added in order, each by its declare().
class Settings {
 public:
  template <typename Section>
  Settings& section(const std::string& name, Section& values) {
    prefix_ = name;
    values.declare(*this);
    return *this;
  }
  Setting& operator()(int64_t& v, const std::string& name, std::string help) { return add(name, &v, std::move(help)); }
  Setting& operator()(double& v, const std::string& name, std::string help) { return add(name, &v, std::move(help)); }
  Setting& operator()(std::string& v, const std::string& name, std::string help) { return add(name, &v, std::move(help)); }
  Setting& operator()(bool& v, const std::string& name, std::string help) { return add(name, &v, std::move(help)); }

  std::deque<Setting>& all() { return list_; }
  const std::deque<Setting>& all() const { return list_; }
  // The setting named KEY ("train.lr"); refused naming SOURCE with the nearest key when it is a slip.
  Setting& find(const std::string& key, const std::string& source);
  // Sets KEY from command-line text ("--set train.lr=1e-4"), refused naming the key and the type.
  void assign(const std::string& key, const std::string& value);
  // Every setting's rules; throws "config: KEY must be ..." for the first broken one.
  void check() const;
  // "[section]\nkey = value\n" for each, in declaration order; with HELP each key is preceded by its
  // help as a comment (what `--print-config` shows; the checkpoints' copy leaves the comments out).
  std::string toml(bool help = false) const;
  // One line per key: "  train.lr (a number, default 0.0003)  peak learning rate", for --help.
  std::string reference() const;

 private:
  Setting& add(const std::string& name, SettingTarget target, std::string help);
  std::string prefix_;
  std::deque<Setting> list_;  // a deque: declare() chains on the reference add() returns
};

// The shortest text that reads back to V (6e-4 -> "0.0006"), with ".0" on whole numbers.
std::string shortest_double(double v);

// TOML TEXT (a config as Settings::toml writes it) as "section.key" -> its value as TOML spells
// it, for naming the settings two configs differ in. Read by toml++; SOURCE names it in an error.
std::map<std::string, std::string> toml_values(const std::string& text, const std::string& source);

}  // namespace lofi
