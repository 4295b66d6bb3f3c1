// ImageFolder: a classification dataset laid out as ROOT/<class>/**/<image>, with torchvision's
// rules: classes are the sub-directory names sorted, samples listed class by class, files sorted.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/dataset.h"
#include "data/image.h"

namespace rg::data {

// Note [ImageFolder order]
// As torchvision.datasets.ImageFolder: classes = sorted names of ROOT's sub-directories (index =
// position); samples = for each class in that order, every file under its directory (recursively,
// symlinks followed, directories walked in sorted order) whose extension is an image extension we
// decode (.jpg, .jpeg, .png, case-insensitive), sorted by path. Sorting is byte-wise, which is
// Python's code-point order for UTF-8 names. A class without any image is an error, as in torchvision.
class ImageFolder : public ClassifyDataset {
 public:
  // classes: when given, use exactly these class names in this order (a val split is read with
  // the train split's classes); each must exist as a directory.
  explicit ImageFolder(std::string root, std::vector<std::string> classes = {});

  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  const std::string& root() const { return root_; }
  const std::vector<std::string>& classes() const { return classes_; }
  int64_t num_classes() const { return static_cast<int64_t>(classes_.size()); }
  const std::vector<std::pair<std::string, int64_t>>& samples() const { return samples_; }  // (path, label)
  const std::string& path(int64_t index) const;
  int64_t label(int64_t index) const override;
  // Decodes sample `index` as RGB (thread-safe). A file that fails to load throws SampleLoadError
  // (data/dataloader.h) naming it.
  Image load(int64_t index) const override;
  // Number of samples per class, by label.
  std::vector<int64_t> class_counts() const;

 private:
  std::string root_;
  std::vector<std::string> classes_;
  std::vector<std::pair<std::string, int64_t>> samples_;
};

}  // namespace rg::data
