// ImageFolder: the dataset layout of torchvision's datasets.ImageFolder, root/CLASS/.../IMAGE.
// Classes are sorted as torchvision sorts them, or given (so an evaluation set's folders map
// onto the training classes by name); samples come in a fixed, sorted order. Decoding is left
// to image_decode, augmentation to augment.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lofi::data {

struct ImageSample {
  std::string path;   // e.g. "data/train/n01440764/img_001.jpg"
  int64_t label = 0;  // index into ImageFolder::classes()
};

class ImageFolder {
 public:
  // Scans ROOT. With CLASSES empty, the classes are ROOT's subdirectories sorted by name
  // (bytewise, as Python sorts str); otherwise they are CLASSES in that order, and a
  // subdirectory not among them is an error. Files ending in .jpg, .jpeg or .png (any case),
  // at any depth under a class directory, are samples, sorted by path.
  explicit ImageFolder(const std::string& root, std::vector<std::string> classes = {});

  const std::string& root() const { return root_; }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::vector<ImageSample>& samples() const { return samples_; }
  int64_t size() const { return static_cast<int64_t>(samples_.size()); }

 private:
  std::string root_;
  std::vector<std::string> classes_;
  std::vector<ImageSample> samples_;
};

// COUNT samples of FOLDER spread evenly over its classes (as equal a share per class as their sizes
// allow), evenly spaced within each class; deterministic. All samples when COUNT >= size().
std::vector<int64_t> balanced_subset(const ImageFolder& folder, int64_t count);

}  // namespace lofi::data
