// The invariants of a loaded detection dataset (Note [Bad labels]) that the YOLO, COCO and VOC fuzz
// targets check after each load, and the tiny real images their fuzzed labels point at.
#pragma once

#include <cmath>
#include <string>

#include "data/detection.h"
#include "data/image.h"
#include "fuzz/fuzz_util.h"

namespace rg::fuzz {

// The image every fuzzed label file belongs to: kImageW x kImageH.
constexpr int64_t kImageW = 32, kImageH = 24;

// Writes a kImageH x kImageW image (PNG or JPEG by the extension) under scratch_dir() and returns its path.
inline std::string write_test_image(const std::string& name) {
  rg::data::Image img(kImageH, kImageW, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 37);
  const bool png = name.size() > 4 && name.substr(name.size() - 4) == ".png";
  return write_scratch(name, png ? rg::data::encode_png(img) : rg::data::encode_jpeg(img));
}

// Every kept box is a finite, non-empty box inside its image with a class of the dataset; the report's
// counts add up; with `strict`, the same load throws exactly when the report holds a problem.
inline void check_dataset(const rg::data::DetectionDataset& d) {
  const auto& rep = d.report();
  int64_t boxes = 0, backgrounds = 0;
  for (const auto& r : d.records()) {
    RG_FUZZ_CHECK(r.width >= 10 && r.height >= 10, "image ", r.image, " of ", r.width, "x", r.height, " kept");
    for (const auto& b : r.boxes) {
      RG_FUZZ_CHECK(std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) && std::isfinite(b.y2),
                    "non-finite box");
      RG_FUZZ_CHECK(b.x1 >= 0 && b.y1 >= 0 && b.x2 <= r.width && b.y2 <= r.height, "box [", b.x1, ", ", b.y1, ", ",
                    b.x2, ", ", b.y2, "] outside its ", r.width, "x", r.height, " image");
      RG_FUZZ_CHECK(b.x2 > b.x1 && b.y2 > b.y1, "empty box kept");
      RG_FUZZ_CHECK(b.cls >= 0 && b.cls < d.num_classes(), "class ", b.cls, " of ", d.num_classes());
    }
    boxes += static_cast<int64_t>(r.boxes.size());
    backgrounds += r.boxes.empty();
  }
  RG_FUZZ_CHECK(rep.images == d.size() && rep.boxes == boxes && rep.backgrounds == backgrounds, "report counts");
  int64_t dropped = 0;
  for (int64_t k : rep.dropped) dropped += k;
  RG_FUZZ_CHECK(dropped == static_cast<int64_t>(rep.problems.size()), "dropped ", dropped, " but ",
                rep.problems.size(), " problems");
  for (const auto& p : rep.problems) {
    RG_FUZZ_CHECK(!p.file.empty() && !p.message.empty() && p.line >= 0, "problem without a file or message");
  }
  (void)rep.summary();
}

// Loads twice through `load(strict)`. The lenient load returns a dataset that passes check_dataset,
// or (only when `file_errors` says the format has file-level errors: a COCO json without categories,
// ...) throws rg::Error naming `file`, and then the strict load throws too. A strict load throws
// rg::Error naming the first problem's file exactly when the lenient load reported problems.
template <typename Load>
void check_lenient_and_strict(Load&& load, bool file_errors, const std::string& file) {
  rg::data::DetectionDataset d({"x"}, {});
  if (!returns_or_rg_error([&] { d = load(false); }, file)) {
    RG_FUZZ_CHECK(file_errors, "a lenient load threw");
    RG_FUZZ_CHECK(!returns_or_rg_error([&] { (void)load(true); }), "the strict load returned");
    return;
  }
  check_dataset(d);
  const auto& problems = d.report().problems;
  const bool strict_ok = returns_or_rg_error([&] { (void)load(true); },
                                             problems.empty() ? std::string_view() : problems.front().file);
  RG_FUZZ_CHECK(strict_ok == problems.empty(), "strict load ", strict_ok ? "returned" : "threw", " with ",
                problems.size(), " problems");
}

}  // namespace rg::fuzz
