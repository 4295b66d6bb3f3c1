// ImageFolder: directory scan with torchvision's ordering (Note [ImageFolder order]).
#include "data/image_folder.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "data/dataloader.h"

namespace fs = std::filesystem;

namespace rg::data {

namespace {
bool is_image_file(const fs::path& p) { return format_from_extension(p.filename().string()) != ImageFormat::Unknown; }

// Every image file under dir, as torchvision's make_dataset: the directories of the walk sorted by
// their path string (so "a-b" comes before "a/c", as in Python), then each one's files sorted.
void collect_images(const fs::path& dir, std::vector<std::string>* out) {
  std::vector<fs::path> dirs = {dir};
  for (size_t i = 0; i < dirs.size(); ++i) {
    for (const auto& e : fs::directory_iterator(dirs[i], fs::directory_options::follow_directory_symlink)) {
      if (e.is_directory()) dirs.push_back(e.path());
    }
  }
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) { return a.string() < b.string(); });
  for (const auto& d : dirs) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(d, fs::directory_options::follow_directory_symlink)) {
      if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path().filename().string());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) out->push_back((d / f).string());
  }
}
}  // namespace

ImageFolder::ImageFolder(std::string root, std::vector<std::string> classes)
    : root_(std::move(root)), classes_(std::move(classes)) {
  std::error_code ec;
  RG_CHECK(fs::is_directory(root_, ec), "ImageFolder: '", root_, "' is not a directory");
  if (classes_.empty()) {
    for (const auto& e : fs::directory_iterator(root_, fs::directory_options::follow_directory_symlink)) {
      if (e.is_directory()) classes_.push_back(e.path().filename().string());
    }
    std::sort(classes_.begin(), classes_.end());
    RG_CHECK(!classes_.empty(), "ImageFolder: couldn't find any class folder in '", root_, "'");
  }
  std::vector<std::string> empty;
  for (size_t k = 0; k < classes_.size(); ++k) {
    const fs::path dir = fs::path(root_) / classes_[k];
    RG_CHECK(fs::is_directory(dir, ec), "ImageFolder: class folder '", dir.string(), "' does not exist");
    std::vector<std::string> files;
    collect_images(dir, &files);
    if (files.empty()) empty.push_back(classes_[k]);
    for (auto& f : files) samples_.emplace_back(std::move(f), static_cast<int64_t>(k));
  }
  if (!empty.empty()) {
    std::string names;
    for (const auto& n : empty) names += (names.empty() ? "" : ", ") + n;
    RG_THROW("ImageFolder: found no valid file for the classes ", names, " in '", root_,
             "'. Supported extensions are: .jpg, .jpeg, .png");
  }
}

const std::string& ImageFolder::path(int64_t index) const {
  RG_CHECK(index >= 0 && index < size(), "ImageFolder('", root_, "'): index ", index, " out of range [0, ", size(), ")");
  return samples_[static_cast<size_t>(index)].first;
}

int64_t ImageFolder::label(int64_t index) const {
  RG_CHECK(index >= 0 && index < size(), "ImageFolder('", root_, "'): index ", index, " out of range [0, ", size(), ")");
  return samples_[static_cast<size_t>(index)].second;
}

Image ImageFolder::load(int64_t index) const {
  const std::string& file = path(index);
  try {
    return read_image(file, 3);
  } catch (const std::exception& e) {  // the loader may replace it (Note [Corrupt samples])
    throw SampleLoadError(file, e.what());
  }
}

std::vector<int64_t> ImageFolder::class_counts() const {
  std::vector<int64_t> c(classes_.size(), 0);
  for (const auto& s : samples_) ++c[static_cast<size_t>(s.second)];
  return c;
}

}  // namespace rg::data
