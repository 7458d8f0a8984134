#include "lofi/eval/inspect.h"

#include "lofi/eval/table.h"
#include "lofi/io/safetensors.h"

namespace lofi::eval {

std::string describe_safetensors(const std::string& path) {
  io::SafetensorsFile file(path);
  std::string out = path + "\n";
  for (const auto& [k, v] : file.metadata()) {
    const std::string first = v.substr(0, v.find('\n'));
    out += "  metadata " + k + " = " + first + (first.size() < v.size() ? " ..." : "") + "\n";
  }
  ResultsTable table({"tensor", "dtype", "shape", "elements"});
  int64_t total = 0;
  for (const auto& e : file.entries()) {
    int64_t n = 1;
    std::string shape = "[";
    for (size_t i = 0; i < e.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(e.shape[i]), n *= e.shape[i];
    table.add_row({e.name, e.dtype, shape + "]", std::to_string(n)}, nullptr);
    total += n;
  }
  return out + table.text() + std::to_string(file.entries().size()) + " tensors, " + std::to_string(total) +
         " elements, " + std::to_string(file.data_bytes()) + " bytes of data\n";
}

}  // namespace lofi::eval
