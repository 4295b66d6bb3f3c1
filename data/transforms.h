// Classification transforms with torchvision's semantics: geometric ones on u8 images driven by a
// SampleRng (Note [Per-sample randomness]), and the float conversions: to_tensor, normalize, and
// the batched u8 -> f32 normalisation the loader's consumer runs on the device.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "data/image.h"
#include "data/sample_rng.h"

namespace rg::data {

// ---- geometric (u8)
// RandomCrop(size, padding, fill): pad every side by `padding` with `fill`, then take an (h, w)
// window at top = randint(0, H + 2p - h + 1), left = randint(0, W + 2p - w + 1) (drawn in that order).
Image random_crop(const Image& img, int64_t h, int64_t w, int64_t padding, SampleRng& rng, uint8_t fill = 0);
// RandomHorizontalFlip(p): flips when rng.uniform() < p (one draw, always made).
Image random_horizontal_flip(const Image& img, SampleRng& rng, double p = 0.5);
// Resize(size) with an int: the shorter side becomes `size`, the longer one size * long / short
// (truncated, as torchvision); bilinear.
Image resize_shorter(const Image& img, int64_t size);
// CenterCrop((h, w)): top = round((H - h) / 2), left = round((W - w) / 2); outside reads 0.
Image center_crop(const Image& img, int64_t h, int64_t w);

// The classification pipeline of the trainer (torchvision's CIFAR recipe when size == the
// image size): images not already size x size are first brought there by resize_shorter + center_crop;
// then, in training, RandomCrop(size, padding) and RandomHorizontalFlip(0.5).
struct ClassifyTransform {
  int64_t size = 0;          // output side; 0 keeps each image's own size (the loader requires equal sizes)
  bool train = false;        // apply the random augmentations below
  int64_t crop_padding = 4;  // RandomCrop padding (0: no random crop)
  bool hflip = true;
  uint8_t fill = 0;
  Image operator()(const Image& img, SampleRng& rng) const;
};

// ---- float conversions
// ToTensor: (H, W, C) u8 -> (C, H, W) f32 = value / 255, on the CPU.
Tensor to_tensor(const Image& img);
// Normalize: (C, H, W) or (B, C, H, W) float -> (x - mean[c]) / std[c] per channel, in f32, on the CPU.
Tensor normalize(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std);

// Note [u8 batches, device normalisation]
// The loader collates images as u8 (B, C, H, W) (a quarter of f32's host-to-device traffic) and
// the consumer turns them into f32 on the device with normalize_u8: y = x * s[c] + b[c], where
// s[c] = 1 / (255 std[c]) and b[c] = -mean[c] / std[c] are computed in double and rounded to f32.
// This equals torchvision's ToTensor + Normalize up to f32 rounding (a few ulps), not bit for bit.
// x: (B, C, H, W) u8 on any device -> (B, C, H, W) f32 on the same device.
Tensor normalize_u8(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std);

// normalize_u8 with the per-channel constants uploaded once per device, so that a training step
// makes no small synchronous host-to-device copies. Thread-safe.
class U8Normalizer {
 public:
  U8Normalizer(std::vector<double> mean, std::vector<double> std);
  Tensor operator()(const Tensor& x) const;  // (B, C, H, W) u8 -> (B, C, H, W) f32 on x's device

 private:
  std::vector<double> mean_, std_;
  mutable std::mutex mu_;
  mutable std::map<std::pair<int, int>, std::pair<Tensor, Tensor>> consts_;  // (device type, index) -> (scale, shift)
};

// ImageNet's statistics (torchvision's defaults for pretrained models).
inline const std::vector<double> kImageNetMean = {0.485, 0.456, 0.406};
inline const std::vector<double> kImageNetStd = {0.229, 0.224, 0.225};

}  // namespace rg::data
