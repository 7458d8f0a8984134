#include "lofi/eval/inspect.h"

#include <filesystem>

#include "lofi/eval/table.h"
#include "lofi/io/safetensors_set.h"

namespace lofi::eval {

std::string describe_safetensors(const std::string& path) {
  // A PEFT adapter directory: its weights file (adapter_config.json beside it says the rest).
  const bool peft = std::filesystem::is_directory(path) && std::filesystem::exists(path + "/adapter_config.json");
  const io::SafetensorsSet set(peft ? path + "/adapter_model.safetensors" : path);
  const bool sharded = set.files().size() > 1;
  std::string out = path + (peft ? " (a PEFT adapter: its settings are in adapter_config.json)" : "") + "\n";
  if (sharded) out += "  " + std::to_string(set.files().size()) + " shards (" + set.source() + ")\n";
  for (const auto& [k, v] : set.metadata()) {
    const std::string first = v.substr(0, v.find('\n'));
    out += "  metadata " + k + " = " + first + (first.size() < v.size() ? " ..." : "") + "\n";
  }
  std::vector<std::string> columns{"tensor", "dtype", "shape", "elements"};
  if (sharded) columns.push_back("shard");
  ResultsTable table(columns);
  int64_t total = 0;
  for (const auto& t : set.tensors()) {
    const io::TensorEntry& e = *t.entry;
    int64_t n = 1;
    std::string shape = "[";
    for (size_t i = 0; i < e.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(e.shape[i]), n *= e.shape[i];
    std::vector<std::string> row{e.name, e.dtype, shape + "]", std::to_string(n)};
    if (sharded) row.push_back(std::filesystem::path(t.file->path()).filename().string());
    table.add_row(row, nullptr);
    total += n;
  }
  size_t bytes = 0;
  for (const auto& f : set.files()) bytes += f->data_bytes();
  return out + table.text() + std::to_string(set.tensors().size()) + " tensors, " + std::to_string(total) + " elements, " +
         std::to_string(bytes) + " bytes of data\n";
}

}  // namespace lofi::eval
