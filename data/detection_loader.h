// Detection batches for the DataLoader: ultralytics' per-sample pipeline (mosaic, mixup, letterbox,
// random perspective, HSV, flips), rectangular evaluation batches, multi-scale training sizes, and
// the collation into images + (N, 6) targets + per-image geometry (Note [Detection batches]).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/box_transforms.h"
#include "data/dataloader.h"
#include "data/detection.h"

namespace rg::data {

// The augmentation hyperparameters, with ultralytics' names and YOLOv3/v5 defaults (hyp.scratch).
struct DetectionAugment {
  double hsv_h = 0.015, hsv_s = 0.7, hsv_v = 0.4;
  double degrees = 0.0, translate = 0.1, scale = 0.5, shear = 0.0, perspective = 0.0;
  double flipud = 0.0, fliplr = 0.5;
  double mosaic = 1.0, mixup = 0.0;
  AffineParams affine() const { return {degrees, translate, scale, shear, perspective}; }
};
// Reads the augmentation keys of an ultralytics hyp yaml (other keys, lr0 and the like, belong to
// the trainer and are ignored); absent keys keep their defaults. Errors name file, line and key,
// and out-of-range values (a probability outside [0, 1], scale >= 1 ...) are refused.
DetectionAugment read_augment_yaml(const std::string& path);

struct DetectionPipeline {
  int64_t img_size = 416;   // training size, or the long side for evaluation
  int64_t stride = 32;      // sizes are multiples of it
  bool augment = false;     // training augmentation (hyp)
  DetectionAugment hyp;
  bool rect = false;        // rectangular batches (Note [Rectangular batches]); no mosaic
  double rect_pad = 0.5;    // ultralytics pads evaluation batch shapes by half a stride
  bool multi_scale = false; // Note [Multi-scale]
  bool fused_mosaic = true;  // Note [Fused mosaic] (false: always the 2s canvas, then the warp)
  CandidateRule candidates;
};

// Note [Multi-scale]
// The training size of step `step` (the batch index) of epoch `epoch` is drawn from SampleRng(
// mix(seed), epoch, step), uniformly among the multiples of `stride` in [0.5 img, 1.5 img] (416:
// 224, 256, ..., 608). Every rank and every loader worker computes it from the same three numbers,
// so all ranks train step s at one size without communicating, and the worker that builds batch s
// builds it at that size (ultralytics instead resizes the batch on the device after loading).
int64_t multi_scale_size(uint64_t seed, int64_t epoch, int64_t step, int64_t img_size, int64_t stride);

// Note [Rectangular batches]
// As ultralytics' --rect: with images sorted by aspect ratio h / w (AspectRatioSampler), a batch
// whose ratios span [lo, hi] gets shape (h, w) = img * (hi, 1) when hi < 1, img * (1, 1 / lo) when
// lo > 1, else (img, img), each side then ceil(side / stride + pad) * stride. The shape is computed
// from the images in the batch, so any sharding of the sorted order works.
std::pair<int64_t, int64_t> rect_batch_shape(const DetectionDataset& ds, const std::vector<int64_t>& indices,
                                             int64_t img_size, int64_t stride, double pad);

// Dataset indices sorted by aspect ratio (stable), rank r of `world` taking every world-th one
// (evaluation sharding: no padding); the same order every epoch.
class AspectRatioSampler : public Sampler {
 public:
  explicit AspectRatioSampler(const DetectionDataset& ds, int64_t world = 1, int64_t rank = 0);
  std::vector<int64_t> indices(int64_t epoch) const override { return order_; }
  int64_t size() const override { return static_cast<int64_t>(order_.size()); }

 private:
  std::vector<int64_t> order_;
};

// One sample of a batch: the image at the batch size, its boxes in its pixels, and its geometry.
struct DetectionSample {
  Image image;
  Boxes boxes;
  ImageInfo info;
};

// ultralytics' load_mosaic: four images (this one and three drawn from the whole dataset, shuffled)
// with long side s around a centre drawn in [s/2, 3s/2) on a 2s x 2s canvas of 114, boxes clipped
// to the canvas, then random_perspective with border -s/2: an s x s image.
DetectionSample load_mosaic(const DetectionDataset& ds, int64_t index, int64_t s, const DetectionPipeline& p, SampleRng& rng);

// The pipeline for dataset index `index` at batch size (h, w) (ultralytics' __getitem__): with
// augment, mosaic with probability hyp.mosaic (square batches only; mixup of a second mosaic with
// probability hyp.mixup, ratio Beta(32, 32)), else letterbox (+ random_perspective); then HSV,
// flip up-down, flip left-right. Without augment: letterbox only (info.mappable).
DetectionSample make_detection_sample(const DetectionDataset& ds, int64_t index, int64_t h, int64_t w,
                                      const DetectionPipeline& p, SampleRng& rng);

// Note [Detection batches]
// images (B, 3, H, W) u8 RGB; targets (N, 6) f32, one row per box: [image index in the batch,
// class, cx, cy, w, h] with the box in the batch's pixels divided by W and H (ultralytics'
// collate_fn layout, what build_targets expects); info[i]: the dataset index, file, original
// (h0, w0), and the letterbox mapping back to original pixels (unletterbox_box), valid when
// info[i].mappable. H and W: img_size, the step's multi-scale size, or the rectangular shape.
Batch collate_detection(std::vector<DetectionSample>& samples, bool pinned);

// The batch function of a detection DataLoader (with DataLoaderOptions::seed as the seed).
BatchFn detection_batch_fn(std::shared_ptr<const DetectionDataset> ds, DetectionPipeline p);

// Beta(a, b) from two gamma draws (Marsaglia-Tsang), for mixup.
double sample_beta(SampleRng& rng, double a, double b);

}  // namespace rg::data
