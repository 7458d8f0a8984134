#include "lofi/io/jsonl.h"

#include <filesystem>
#include <fstream>

#include "lofi/error.h"

namespace lofi::io {

void for_each_jsonl_line(const std::string& path, const std::string& what,
                         const std::function<void(const nlohmann::json& value, const std::string& where)>& f) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, ": is a directory, expected a JSONL file (", what, " per line)");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open");
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = cat(path, ":", n);
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      fail(where, ": not JSON (", e.what(), "); expected ", what, " per line");
    }
    f(value, where);
  }
}

}  // namespace lofi::io
