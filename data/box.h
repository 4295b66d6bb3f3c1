// Detection boxes in pixels (Note [Box coordinates]), their conversions to and from the YOLO, COCO
// and VOC conventions, and the per-image geometry a detection batch carries (ImageInfo).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace rg::data {

// Note [Box coordinates]
// Boxes live in continuous pixel-edge coordinates: an image of W x H pixels covers [0, W] x [0, H]
// and pixel (row r, column c) is the unit square [c, c + 1) x [r, r + 1). The box tight around the
// pixel columns c0..c1 therefore has x1 = c0 and x2 = c1 + 1 (width c1 - c0 + 1).
// - YOLO txt: cx = (x1 + x2) / 2 / W, cy likewise / H, w = (x2 - x1) / W, h = (y2 - y1) / H.
// - COCO bbox [x, y, w, h] = [x1, y1, x2 - x1, y2 - y1] (COCO's own convention is this one).
// - VOC bndbox: 1-based inclusive pixel indices, so x1 = xmin - 1, x2 = xmax (as detectron2 reads it).
// Every geometric transform maps a point p of the source to M p of the result, and maps pixels by
// sampling the source at M^-1 (pixel centre): boxes and pixels therefore move together exactly.
struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  int32_t cls = 0;
  float width() const { return x2 - x1; }
  float height() const { return y2 - y1; }
  bool operator==(const Box&) const = default;
};
using Boxes = std::vector<Box>;

inline Box box_from_yolo(int32_t cls, double cx, double cy, double w, double h, double img_w, double img_h) {
  return {static_cast<float>((cx - w / 2) * img_w), static_cast<float>((cy - h / 2) * img_h),
          static_cast<float>((cx + w / 2) * img_w), static_cast<float>((cy + h / 2) * img_h), cls};
}

// Clips a box to [0, W] x [0, H].
inline Box clip_box(Box b, double img_w, double img_h) {
  b.x1 = static_cast<float>(std::clamp<double>(b.x1, 0.0, img_w));
  b.x2 = static_cast<float>(std::clamp<double>(b.x2, 0.0, img_w));
  b.y1 = static_cast<float>(std::clamp<double>(b.y1, 0.0, img_h));
  b.y2 = static_cast<float>(std::clamp<double>(b.y2, 0.0, img_h));
  return b;
}

// How an image of the batch relates to its file: batch pixel = original pixel * scale + pad
// (both axes), then clipped to the batch's H x W. Set by letterbox (data/box_transforms.h).
struct LetterboxParams {
  double scale = 1.0;
  double pad_x = 0.0, pad_y = 0.0;
};

// What the loader records about each image of a detection batch.
struct ImageInfo {
  int64_t index = -1;              // dataset index
  std::string path;                // the image file
  int64_t h0 = 0, w0 = 0;          // original size
  LetterboxParams letterbox;       // batch <- original mapping; meaningful when `mappable`
  bool mappable = false;           // the image is its file letterboxed, nothing else (no mosaic, affine, flip)
};

}  // namespace rg::data
