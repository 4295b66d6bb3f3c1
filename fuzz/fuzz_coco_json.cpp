// Fuzzes the COCO json reader (data/coco_format.cpp): the input is an instances json whose images may
// name a.png (32x24) and b.jpg (24x32) beside it; read_coco_json's result is checked field by field,
// and load_coco's dataset by check_dataset (Note [Bad labels]).
#include <cmath>
#include <filesystem>

#include "data/coco_format.h"
#include "fuzz/dataset_checks.h"

namespace {
struct Layout {
  std::string dir;
  Layout() {
    dir = rg::fuzz::scratch_dir() + "/coco";
    std::filesystem::create_directories(dir);
    rg::fuzz::write_test_image("coco/a.png");
    rg::data::Image tall(rg::fuzz::kImageW, rg::fuzz::kImageH, 1, 200);
    rg::fuzz::write_scratch("coco/b.jpg", rg::data::encode_jpeg(tall));
  }
};

void check_file(const rg::data::CocoFile& f) {
  for (const auto& im : f.images) RG_FUZZ_CHECK(im.id >= 0 && !im.file_name.empty() && im.width >= 0 && im.height >= 0, "image");
  for (const auto& c : f.categories) RG_FUZZ_CHECK(c.id >= 0, "category id ", c.id);
  for (const auto& a : f.annotations) {
    if (!a.problem.empty()) continue;
    RG_FUZZ_CHECK(a.image_id >= 0 && a.category_id >= 0 && a.bbox_len == 4, "annotation without a problem");
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Layout layout;
  const std::string json = rg::fuzz::write_scratch("coco/instances.json", data, size);
  rg::data::CocoFile f;
  if (rg::fuzz::returns_or_rg_error([&] { f = rg::data::read_coco_json(json); }, json)) check_file(f);
  auto load = [&](bool strict) {
    rg::data::LabelCheckOptions opts;
    opts.use_cache = false;
    opts.threads = 1;
    opts.strict = strict;
    opts.keep_difficult = size % 2;  // iscrowd boxes kept or skipped
    return rg::data::load_coco(json, layout.dir, opts);
  };
  rg::fuzz::check_lenient_and_strict(load, true, json);
  return 0;
}
