// Classification transforms (torchvision semantics) and the u8 -> f32 conversions.
#include "data/transforms.h"

#include <cmath>

#include "core/native.h"

namespace rg::data {

Image random_crop(const Image& img, int64_t h, int64_t w, int64_t padding, SampleRng& rng, uint8_t fill) {
  RG_CHECK(padding >= 0, "RandomCrop: negative padding ", padding);
  const int64_t ph = img.height + 2 * padding, pw = img.width + 2 * padding;
  RG_CHECK(h <= ph && w <= pw, "RandomCrop: required crop size ", h, "x", w, " is larger than the padded image ",
           ph, "x", pw);
  const int64_t top = rng.randint(0, ph - h + 1);
  const int64_t left = rng.randint(0, pw - w + 1);
  return crop(img, top - padding, left - padding, h, w, fill);
}

Image random_horizontal_flip(const Image& img, SampleRng& rng, double p) {
  return rng.uniform() < p ? hflip(img) : img;
}

Image resize_shorter(const Image& img, int64_t size) {
  RG_CHECK(size > 0, "Resize: size must be positive, got ", size);
  if (img.height <= img.width) {
    const int64_t w = size * img.width / img.height;
    return (img.height == size && img.width == w) ? img : resize_bilinear(img, size, w);
  }
  const int64_t h = size * img.height / img.width;
  return (img.width == size && img.height == h) ? img : resize_bilinear(img, h, size);
}

Image center_crop(const Image& img, int64_t h, int64_t w) {
  const auto top = static_cast<int64_t>(std::round(static_cast<double>(img.height - h) / 2.0));
  const auto left = static_cast<int64_t>(std::round(static_cast<double>(img.width - w) / 2.0));
  return crop(img, top, left, h, w, 0);
}

Image ClassifyTransform::operator()(const Image& in, SampleRng& rng) const {
  Image img = in;
  if (size > 0 && (img.height != size || img.width != size)) img = center_crop(resize_shorter(img, size), size, size);
  if (!train) return img;
  if (crop_padding > 0) img = random_crop(img, img.height, img.width, crop_padding, rng, fill);
  if (hflip) img = random_horizontal_flip(img, rng, 0.5);
  return img;
}

Tensor to_tensor(const Image& img) {
  Tensor t = empty({img.channels, img.height, img.width}, DType::f32);
  float* o = t.data<float>();
  const int64_t hw = img.height * img.width;
  for (int64_t i = 0; i < hw; ++i) {
    for (int64_t c = 0; c < img.channels; ++c) {
      o[c * hw + i] = static_cast<float>(img.pixels[static_cast<size_t>(i * img.channels + c)]) / 255.0f;
    }
  }
  return t;
}

Tensor normalize(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std) {
  RG_CHECK(x.dim() == 3 || x.dim() == 4, "Normalize: expected (C, H, W) or (B, C, H, W), got ", shape_str(x.sizes()));
  const int64_t cdim = x.dim() - 3;
  const int64_t C = x.size(cdim);
  RG_CHECK(static_cast<int64_t>(mean.size()) == C && static_cast<int64_t>(std.size()) == C, "Normalize: ", C,
           " channels but ", mean.size(), " means and ", std.size(), " stds");
  Tensor y = native::contiguous(native::to(x, kCPU, DType::f32, /*force_copy=*/true));
  float* p = y.data<float>();
  const int64_t hw = x.size(cdim + 1) * x.size(cdim + 2);
  const int64_t b = cdim ? x.size(0) : 1;
  for (int64_t n = 0; n < b; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const auto m = static_cast<float>(mean[static_cast<size_t>(c)]), s = static_cast<float>(std[static_cast<size_t>(c)]);
      RG_CHECK(s != 0.0f, "Normalize: std[", c, "] is 0");
      float* q = p + (n * C + c) * hw;
      for (int64_t i = 0; i < hw; ++i) q[i] = (q[i] - m) / s;
    }
  }
  return y;
}

U8Normalizer::U8Normalizer(std::vector<double> mean, std::vector<double> std) : mean_(std::move(mean)), std_(std::move(std)) {
  RG_CHECK(mean_.size() == std_.size() && !mean_.empty(), "normalize_u8: ", mean_.size(), " means and ", std_.size(),
           " stds");
  for (size_t c = 0; c < std_.size(); ++c) RG_CHECK(std_[c] != 0.0, "normalize_u8: std[", c, "] is 0");
}

Tensor U8Normalizer::operator()(const Tensor& x) const {
  RG_CHECK(x.dim() == 4 && x.dtype() == DType::u8, "normalize_u8: expected a (B, C, H, W) uint8 batch, got ",
           x.describe());
  const int64_t C = x.size(1);
  RG_CHECK(static_cast<int64_t>(mean_.size()) == C, "normalize_u8: ", C, " channels but ", mean_.size(),
           " means and stds");
  Tensor s, b;
  {
    std::lock_guard<std::mutex> lk(mu_);
    const auto key = std::make_pair(static_cast<int>(x.device().type), x.device().index);
    auto it = consts_.find(key);
    if (it == consts_.end()) {
      std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
      for (size_t c = 0; c < scale.size(); ++c) {
        scale[c] = static_cast<float>(1.0 / (255.0 * std_[c]));
        shift[c] = static_cast<float>(-mean_[c] / std_[c]);
      }
      it = consts_.emplace(key, std::make_pair(native::to(from_vector(scale, {C, 1, 1}), x.device(), DType::f32),
                                               native::to(from_vector(shift, {C, 1, 1}), x.device(), DType::f32)))
               .first;
    }
    s = it->second.first;
    b = it->second.second;
  }
  Tensor y = native::to(x, x.device(), DType::f32);
  native::binary_(BinaryOp::Mul, y, s);
  native::binary_(BinaryOp::Add, y, b);
  return y;
}

Tensor normalize_u8(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std) {
  return U8Normalizer(mean, std)(x);
}

}  // namespace rg::data
