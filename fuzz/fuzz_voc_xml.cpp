// Fuzzes the Pascal VOC xml reader (data/voc_format.cpp, expat): the input is Annotations/x.xml of a
// VOC folder whose JPEGImages/ holds x.jpg (32x24) and a.png; loaded with the 20 VOC classes and with
// the classes found in the xml, each checked by check_dataset (Note [Bad labels]).
#include <filesystem>

#include "data/voc_format.h"
#include "fuzz/dataset_checks.h"

namespace {
struct Layout {
  std::string root, xml;
  Layout() {
    root = rg::fuzz::scratch_dir() + "/voc";
    std::filesystem::create_directories(root + "/Annotations");
    std::filesystem::create_directories(root + "/JPEGImages");
    rg::fuzz::write_test_image("voc/JPEGImages/x.jpg");
    rg::fuzz::write_test_image("voc/JPEGImages/a.png");
    xml = root + "/Annotations/x.xml";
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Layout layout;
  rg::fuzz::write_scratch("voc/Annotations/x.xml", data, size);
  for (const bool given : {true, false}) {
    auto load = [&](bool strict) {
      rg::data::LabelCheckOptions opts;
      opts.use_cache = false;
      opts.threads = 1;
      opts.strict = strict;
      opts.keep_difficult = size % 2;  // difficult objects kept or skipped
      return rg::data::load_voc(layout.root, "", given ? rg::data::voc_classes() : std::vector<std::string>{}, opts);
    };
    // Without a class list, an xml without object names is an error naming the folder.
    rg::fuzz::check_lenient_and_strict(load, !given, given ? layout.xml : layout.root);
  }
  return 0;
}
