// Directory scan for ImageFolder. Sorting makes the sample order independent of the file
// system's listing order, so every node and every run sees the same index -> image mapping.
#include "lofi/data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>

#include "lofi/error.h"

namespace lofi::data {
namespace fs = std::filesystem;
namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

// Every image under DIR, following links, sorted by (directory, file name) as torchvision's
// sorted(os.walk(...)) then sorted(fnames) orders them.
std::vector<std::string> list_images(const fs::path& dir) {
  std::vector<std::pair<std::string, std::string>> found;  // (parent dir, file name)
  std::error_code ec;
  auto options = fs::directory_options::follow_directory_symlink;
  for (fs::recursive_directory_iterator it(dir, options, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) && is_image_file(it->path()))
      found.emplace_back(it->path().parent_path().string(), it->path().filename().string());
  }
  if (ec) fail(dir.string(), ": cannot list image directory: ", ec.message());
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  paths.reserve(found.size());
  for (auto& [parent, name] : found) paths.push_back((fs::path(parent) / name).string());
  return paths;
}

}  // namespace

ImageFolder::ImageFolder(const std::string& root, std::vector<std::string> classes)
    : root_(root), classes_(std::move(classes)) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail(root, ": expected an image folder (root/CLASS/IMAGE), found no directory");
  std::vector<std::string> dirs;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) dirs.push_back(it->path().filename().string());
  if (ec) fail(root, ": cannot list image folder: ", ec.message());
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty()) fail(root, ": expected class subdirectories (root/CLASS/IMAGE), found none");
  if (classes_.empty()) classes_ = dirs;
  for (const auto& dir : dirs) {
    auto at = std::find(classes_.begin(), classes_.end(), dir);
    if (at == classes_.end())
      fail(root, ": class directory \"", dir, "\" is not one of the ", classes_.size(), " given classes");
    auto label = static_cast<int64_t>(at - classes_.begin());
    for (auto& path : list_images(fs::path(root) / dir)) samples_.push_back({std::move(path), label});
  }
  // Labels ascend with the class order, so ordering by label keeps torchvision's order also
  // when the classes were given in an order that differs from the directory names'.
  std::stable_sort(samples_.begin(), samples_.end(),
                   [](const ImageSample& a, const ImageSample& b) { return a.label < b.label; });
  if (samples_.empty()) fail(root, ": expected .jpg, .jpeg or .png images under the class directories, found none");
}

std::vector<int64_t> balanced_subset(const ImageFolder& folder, int64_t count) {
  std::vector<std::vector<int64_t>> by_class(folder.classes().size());
  for (int64_t i = 0; i < folder.size(); ++i)
    by_class[static_cast<size_t>(folder.samples()[static_cast<size_t>(i)].label)].push_back(i);
  // Shares by rounds: each round gives one more sample to every class that has one left.
  std::vector<int64_t> share(by_class.size(), 0);
  for (int64_t taken = 0, progress = 1; taken < count && progress;) {
    progress = 0;
    for (size_t c = 0; c < by_class.size() && taken < count; ++c)
      if (share[c] < static_cast<int64_t>(by_class[c].size())) ++share[c], ++taken, progress = 1;
  }
  std::vector<int64_t> out;
  for (size_t c = 0; c < by_class.size(); ++c) {
    const auto n = static_cast<int64_t>(by_class[c].size());
    for (int64_t k = 0; k < share[c]; ++k) out.push_back(by_class[c][static_cast<size_t>(k * n / share[c])]);
  }
  return out;
}

}  // namespace lofi::data
