// Fuzzes the YOLO label lines (data/yolo_format.cpp): the input is images/a.txt's label file of a real
// 32x24 image, loaded through load_yolo_sources. A bad line is dropped and reported with its line
// number, never thrown (Note [Bad labels]); --strict throws exactly when something was reported.
#include <algorithm>
#include <filesystem>

#include "data/yolo_format.h"
#include "fuzz/dataset_checks.h"

namespace {
struct Layout {
  std::string images, label;
  Layout() {
    images = rg::fuzz::scratch_dir() + "/yolo/images";
    std::filesystem::create_directories(images);
    std::filesystem::create_directories(rg::fuzz::scratch_dir() + "/yolo/labels");
    rg::fuzz::write_test_image("yolo/images/a.png");
    label = rg::fuzz::scratch_dir() + "/yolo/labels/a.txt";
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Layout layout;
  rg::fuzz::write_scratch("yolo/labels/a.txt", data, size);
  const auto lines = static_cast<int64_t>(std::count(data, data + size, '\n')) + 1;
  auto load = [&](bool strict) {
    rg::data::LabelCheckOptions opts;
    opts.use_cache = false;
    opts.threads = 1;
    opts.strict = strict;
    return rg::data::load_yolo_sources({layout.images}, {"a", "b", "c"}, opts);
  };
  rg::fuzz::check_lenient_and_strict(load, false, layout.label);
  const auto d = load(false);
  for (const auto& p : d.report().problems) {
    RG_FUZZ_CHECK(p.file == layout.label && p.line >= 1 && p.line <= lines, "problem at ", p.file, ":", p.line);
  }
  return 0;
}
