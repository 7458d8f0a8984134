// Registry<T>: named entries added by files, the one shape behind the model families, the
// architectures, the merge methods and the CLI's commands. Each DIR/STEM.cpp of a registered
// folder defines register_STEM(Registry&) and the build generates the call of every one
// (CMakeLists.txt's lofi_registry), so adding an entry is adding its file.
#pragma once
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lofi/error.h"

namespace lofi {

template <typename T>
class Registry {
 public:
  // KIND names an entry in messages: "merge method", "architecture", "command".
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  // Adds ITEM under NAME; a taken name is refused.
  void add(const std::string& name, std::shared_ptr<T> item) {
    if (find(name)) fail(kind_, " \"", name, "\" is registered twice");
    entries_.emplace_back(name, std::move(item));
  }
  T* find(const std::string& name) const {
    for (const auto& [n, item] : entries_)
      if (n == name) return item.get();
    return nullptr;
  }
  // Every name, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : entries_) out.push_back(entry.first);
    std::sort(out.begin(), out.end());
    return out;
  }
  // The names for a message, sorted and separated by SEPARATOR, each between QUOTE: "a", "b".
  std::string list(const std::string& quote = "\"", const std::string& separator = ", ") const {
    std::string out;
    for (const auto& n : names()) out += (out.empty() ? "" : separator) + quote + n + quote;
    return out;
  }
  // Entries in the order they were added.
  const std::vector<std::pair<std::string, std::shared_ptr<T>>>& entries() const { return entries_; }

 private:
  std::string kind_;
  std::vector<std::pair<std::string, std::shared_ptr<T>>> entries_;
};

// EMPTY filled once, on first use, by FILL (the build's generated register_all_...): the
// process-wide registry of its type.
template <typename R>
const R& filled_registry(void (*fill)(R&), R empty) {
  static const R registry = [&] {
    fill(empty);
    return std::move(empty);
  }();
  return registry;
}

}  // namespace lofi
