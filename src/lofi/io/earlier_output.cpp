#include "lofi/io/earlier_output.h"

#include <filesystem>

#include "lofi/error.h"

namespace lofi::io {

namespace fs = std::filesystem;

void remove_earlier_output(const std::string& dir, const std::string& marker, const std::string& what) {
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(dir, ec);
  if (ec || !fs::exists(status)) return;
  auto refuse = [&](const std::string& found) {
    fail(what, " ", dir, ": exists and ", found, ", so it is not an earlier output to replace (one holds ", marker,
         " and files only); give a new path, or remove it yourself");
  };
  if (!fs::is_directory(status)) refuse("is not a directory");
  if (!fs::is_regular_file(fs::path(dir) / marker)) refuse("holds no " + marker);
  for (const auto& entry : fs::directory_iterator(dir))
    if (!entry.is_regular_file() || entry.is_symlink()) refuse("holds " + entry.path().filename().string() + ", which is not a file");
  fs::remove_all(dir);
}

}  // namespace lofi::io
