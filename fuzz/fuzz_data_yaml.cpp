// Fuzzes the yaml readers (data/yaml_util.cpp through yaml-cpp): the input is read as a data.yaml
// (read_data_yaml) and as a hyperparameter file (read_augment_yaml); each returns a value that keeps
// its documented rules (Note [data.yaml]) or throws rg::Error naming the file.
#include <cmath>

#include "data/detection_loader.h"
#include "data/yolo_format.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = rg::fuzz::write_scratch("data.yaml", data, size);
  rg::data::DataYaml d;
  if (rg::fuzz::returns_or_rg_error([&] { d = rg::data::read_data_yaml(path); }, path)) {
    RG_FUZZ_CHECK(d.nc >= 1 && static_cast<int64_t>(d.names.size()) == d.nc, "nc ", d.nc, ", ", d.names.size(), " names");
    RG_FUZZ_CHECK(!d.train.empty() || !d.val.empty(), "no train and no val");
    RG_FUZZ_CHECK(!d.root.empty() && d.root[0] == '/', "root '", d.root, "' is not absolute");
    for (const auto* split : {&d.train, &d.val, &d.test}) {
      for (const auto& s : *split) RG_FUZZ_CHECK(!s.empty() && s[0] == '/', "source '", s, "' is not absolute");
    }
    for (const char* name : {"train", "val", "test"}) (void)d.split(name);
    RG_FUZZ_CHECK(!rg::fuzz::returns_or_rg_error([&] { (void)d.split("other"); }), "split 'other'");
  }
  rg::data::DetectionAugment a;
  if (rg::fuzz::returns_or_rg_error([&] { a = rg::data::read_augment_yaml(path); }, path)) {
    for (double p : {a.hsv_h, a.hsv_s, a.hsv_v, a.flipud, a.fliplr, a.mosaic, a.mixup}) {
      RG_FUZZ_CHECK(p >= 0 && p <= 1, "probability or gain ", p);
    }
    RG_FUZZ_CHECK(a.degrees >= 0 && a.degrees <= 180 && a.translate >= 0 && a.translate <= 0.5 && a.scale >= 0 &&
                      a.scale < 1 && a.shear >= 0 && a.shear < 90 && a.perspective >= 0 && a.perspective <= 0.01,
                  "affine parameters out of range");
  }
  return 0;
}
