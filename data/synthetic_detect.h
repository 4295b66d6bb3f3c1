// Synthetic detection data: coloured shapes (the classification set's shape kinds as classes) on
// textured, noisy backgrounds of varied sizes and aspect ratios, with overlaps, occlusion and
// shapes cut by the border, written as a YOLO dataset (+ COCO json of val). Deterministic per seed.
#pragma once

#include <cstdint>
#include <string>

#include "data/box.h"
#include "data/image.h"
#include "data/synthetic.h"

namespace rg::data {

struct DetectDataOptions {
  std::string out;
  int64_t classes = 6;                 // the first N shape kinds: circle, square, triangle, cross, ring, star
  int64_t train_images = 800, val_images = 200;
  int64_t min_size = 256, max_size = 416;  // the long side of each image, uniform in [min, max]
  double max_aspect = 1.5;             // width / height log-uniform in [1 / a, a]
  int64_t min_objects = 1, max_objects = 8;
  double min_object = 0.10, max_object = 0.50;  // shape diameter / short side, log-uniform
  int quality = 90;                    // JPEG quality
  uint64_t seed = 0;
  bool plain_background = false;       // the background's base colour only, no texture or noise (same shapes)
};

// Note [Synthetic detection labels]
// Each shape is rasterised with 4 x 4 samples per pixel (a pixel whose corners agree is taken as
// fully in or out) and painted in a flat colour, later shapes over earlier ones. A shape's visible
// coverage of a pixel is its own coverage times what the shapes above leave; its box is the tight
// box of the pixels it visibly covers by at least half (Note [Box coordinates]: integer edges),
// i.e. of what is drawn, not of the geometric outline, so an occluded or border-cut shape gets the
// box of its visible part (COCO's convention). A shape is placed only if it leaves every earlier
// shape at least half of its pixels and shows at least half of its own. Colours stay apart (L1 >= 200
// from the background's mean, >= 100 between shapes) and noise is added to the background only,
// so a pixel's colour tells which shape shows there (the test checks the boxes against that).
struct DetectImage {
  Image image;
  Boxes boxes;  // in image pixels, class = shape kind
  std::vector<std::array<uint8_t, 3>> colours;  // the flat colour of each box's shape
};
DetectImage render_detection_image(const DetectDataOptions& o, uint64_t stream, uint64_t index);

// Writes DIR/images/{train,val}/NNNNNN.jpg, DIR/labels/{train,val}/NNNNNN.txt, DIR/data.yaml,
// DIR/annotations/instances_val.json (COCO, category id = class + 1) and, last, DIR/dataset.json
// with the options. Idempotent like make_classify_dataset: a re-run keeps the image/label pairs
// already there, and a DIR made with other options is an error naming both.
MakeDataResult make_detect_dataset(const DetectDataOptions& o, bool progress = true);

}  // namespace rg::data
