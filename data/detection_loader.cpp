// Detection samples and batches: mosaic, mixup, letterbox, random perspective, HSV, flips
// (ultralytics' LoadImagesAndLabels), multi-scale sizes, rectangular shapes and collation.
#include "data/detection_loader.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "data/yaml_util.h"

namespace rg::data {

// ---- hyperparameters
DetectionAugment read_augment_yaml(const std::string& path) {
  const YAML::Node doc = load_yaml_file(path);
  RG_CHECK(doc.IsMap(), "'", path, "': expected a mapping of hyperparameters");
  DetectionAugment a;
  struct Key {
    const char* name;
    double* value;
    double lo, hi;
    bool hi_open;
  };
  const Key keys[] = {{"hsv_h", &a.hsv_h, 0, 1, false},      {"hsv_s", &a.hsv_s, 0, 1, false},
                      {"hsv_v", &a.hsv_v, 0, 1, false},      {"degrees", &a.degrees, 0, 180, false},
                      {"translate", &a.translate, 0, 0.5, false}, {"scale", &a.scale, 0, 1, true},
                      {"shear", &a.shear, 0, 90, true},      {"perspective", &a.perspective, 0, 0.01, false},
                      {"flipud", &a.flipud, 0, 1, false},    {"fliplr", &a.fliplr, 0, 1, false},
                      {"mosaic", &a.mosaic, 0, 1, false},    {"mixup", &a.mixup, 0, 1, false}};
  for (const Key& k : keys) {
    if (!doc[k.name].IsDefined() || doc[k.name].IsNull()) continue;
    const double v = yaml_double(doc, k.name, path);
    const bool ok = v >= k.lo && (k.hi_open ? v < k.hi : v <= k.hi);
    RG_CHECK(ok, yaml_where(path, doc[k.name]), ": '", k.name, "' is ", v, ", expected [", k.lo, ", ", k.hi,
             k.hi_open ? ")" : "]");
    *k.value = v;
  }
  return a;
}

// ---- batch sizes
int64_t multi_scale_size(uint64_t seed, int64_t epoch, int64_t step, int64_t img_size, int64_t stride) {
  RG_CHECK(img_size > 0 && stride > 0, "multi_scale_size: bad img_size ", img_size, " or stride ", stride);
  const int64_t lo = std::max<int64_t>(1, (img_size / 2 + stride - 1) / stride);  // ceil(0.5 img / stride)
  const int64_t hi = std::max<int64_t>(lo, (img_size * 3 / 2) / stride);         // floor(1.5 img / stride)
  SampleRng rng(SampleRng::mix(seed ^ 0x6D756C7469736361ull), static_cast<uint64_t>(epoch), static_cast<uint64_t>(step));
  return rng.randint(lo, hi + 1) * stride;
}

std::pair<int64_t, int64_t> rect_batch_shape(const DetectionDataset& ds, const std::vector<int64_t>& indices,
                                             int64_t img_size, int64_t stride, double pad) {
  RG_CHECK(!indices.empty(), "rect_batch_shape: empty batch");
  double lo = 1e300, hi = 0;
  for (int64_t i : indices) {
    const DetectionRecord& r = ds.record(i);
    const double ar = static_cast<double>(r.height) / static_cast<double>(r.width);
    lo = std::min(lo, ar), hi = std::max(hi, ar);
  }
  double sh = 1, sw = 1;
  if (hi < 1) sh = hi;
  else if (lo > 1) sw = 1 / lo;
  auto side = [&](double f) {
    return static_cast<int64_t>(std::ceil(f * static_cast<double>(img_size) / static_cast<double>(stride) + pad)) * stride;
  };
  return {side(sh), side(sw)};
}

AspectRatioSampler::AspectRatioSampler(const DetectionDataset& ds, int64_t world, int64_t rank) {
  RG_CHECK(world >= 1 && rank >= 0 && rank < world, "AspectRatioSampler: rank ", rank, " of ", world);
  std::vector<int64_t> all(static_cast<size_t>(ds.size()));
  std::iota(all.begin(), all.end(), int64_t{0});
  auto ar = [&](int64_t i) {
    const DetectionRecord& r = ds.record(i);
    return static_cast<double>(r.height) / static_cast<double>(r.width);
  };
  std::stable_sort(all.begin(), all.end(), [&](int64_t a, int64_t b) { return ar(a) < ar(b); });
  for (size_t i = static_cast<size_t>(rank); i < all.size(); i += static_cast<size_t>(world)) order_.push_back(all[i]);
}

// ---- samples
namespace {
// ds.load, whose failure becomes a SampleLoadError naming the file (Note [Corrupt samples]).
Image load_image(const DetectionDataset& ds, int64_t i, double min_scale, double* scale) {
  try {
    return ds.load(i, min_scale, scale);
  } catch (const SampleLoadError&) {
    throw;
  } catch (const std::exception& e) {
    throw SampleLoadError(ds.record(i).image, e.what());
  }
}

// Record i decoded and resized so that the original appears at scale r (size round(w0 r) x round(h0 r)).
Image load_scaled(const DetectionDataset& ds, int64_t i, double r) {
  const DetectionRecord& rec = ds.record(i);
  double ds_scale = 1.0;
  const Image img = load_image(ds, i, std::min(r, 1.0), &ds_scale);
  const int64_t w = std::max<int64_t>(1, std::llround(rec.width * r)), h = std::max<int64_t>(1, std::llround(rec.height * r));
  const double k = r / ds_scale;
  if (img.width == w && img.height == h && std::fabs(k - 1.0) < 1e-12) return img;
  return resize_scaled(img, h, w, k, k);
}

Boxes scaled_boxes(const Boxes& in, double r, double dx, double dy) {
  Boxes out;
  out.reserve(in.size());
  for (const Box& b : in) {
    out.push_back({static_cast<float>(b.x1 * r + dx), static_cast<float>(b.y1 * r + dy), static_cast<float>(b.x2 * r + dx),
                   static_cast<float>(b.y2 * r + dy), b.cls});
  }
  return out;
}

double sample_gamma(SampleRng& rng, double a) {
  // Marsaglia and Tsang (2000), for a >= 1.
  const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x = 0, v = 0;
    do {
      const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();  // Box-Muller
      x = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = 1.0 - rng.uniform();
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}
}  // namespace

double sample_beta(SampleRng& rng, double a, double b) {
  RG_CHECK(a >= 1 && b >= 1, "sample_beta: parameters must be >= 1, got ", a, ", ", b);
  const double x = sample_gamma(rng, a), y = sample_gamma(rng, b);
  return x / (x + y);
}

namespace {
// One tile of the mosaic: ultralytics' layout of tile i (0: top left, 1: top right, 2: bottom left,
// 3: bottom right) of an h x w picture around (xc, yc) on the 2s canvas: the canvas window
// [x1a, x2a) x [y1a, y2a) shows the tile from (x1b, y1b).
struct TilePlace {
  int64_t x1a, y1a, x2a, y2a, x1b, y1b;
};
TilePlace place_tile(int i, int64_t h, int64_t w, int64_t xc, int64_t yc, int64_t s) {
  TilePlace t{};
  if (i == 0) {
    t.x1a = std::max<int64_t>(xc - w, 0), t.y1a = std::max<int64_t>(yc - h, 0), t.x2a = xc, t.y2a = yc;
    t.x1b = w - (t.x2a - t.x1a), t.y1b = h - (t.y2a - t.y1a);
  } else if (i == 1) {
    t.x1a = xc, t.y1a = std::max<int64_t>(yc - h, 0), t.x2a = std::min(xc + w, 2 * s), t.y2a = yc;
    t.x1b = 0, t.y1b = h - (t.y2a - t.y1a);
  } else if (i == 2) {
    t.x1a = std::max<int64_t>(xc - w, 0), t.y1a = yc, t.x2a = xc, t.y2a = std::min(2 * s, yc + h);
    t.x1b = w - (t.x2a - t.x1a), t.y1b = 0;
  } else {
    t.x1a = xc, t.y1a = yc, t.x2a = std::min(xc + w, 2 * s), t.y2a = std::min(2 * s, yc + h);
    t.x1b = 0, t.y1b = 0;
  }
  return t;
}
}  // namespace

DetectionSample load_mosaic(const DetectionDataset& ds, int64_t index, int64_t s, const DetectionPipeline& p, SampleRng& rng) {
  const auto yc = static_cast<int64_t>(rng.uniform(s / 2.0, 1.5 * s));
  const auto xc = static_cast<int64_t>(rng.uniform(s / 2.0, 1.5 * s));
  int64_t idx[4] = {index, rng.randint(0, ds.size()), rng.randint(0, ds.size()), rng.randint(0, ds.size())};
  for (int i = 3; i > 0; --i) std::swap(idx[i], idx[rng.randint(0, i + 1)]);
  // Note [Fused mosaic]: with no rotation, shear or perspective, the canvas followed by the warp is a
  // scale and shift of each tile, so each tile is resampled once, straight from its file (decoded
  // reduced when the total scale allows) into the s x s result; the draws and the geometry are
  // those of the canvas path, only the interpolation differs (one resampling instead of two).
  const AffineParams aff = p.hyp.affine();
  const bool fused = p.fused_mosaic && aff.degrees == 0 && aff.shear == 0 && aff.perspective == 0;
  DetectionSample out;
  Mat3 M{};
  double scale = 1;
  if (fused) {
    M = random_perspective_matrix(aff, 2 * s, 2 * s, -s / 2, rng, &scale);
    out.image = Image(s, s, 3, 114);
  } else {
    out.image = Image(2 * s, 2 * s, 3, 114);
  }
  for (int i = 0; i < 4; ++i) {
    const DetectionRecord& rec = ds.record(idx[i]);
    const double r = static_cast<double>(s) / static_cast<double>(std::max(rec.height, rec.width));
    const int64_t w = std::max<int64_t>(1, std::llround(rec.width * r)), h = std::max<int64_t>(1, std::llround(rec.height * r));
    const TilePlace t = place_tile(i, h, w, xc, yc, s);
    const double dx = static_cast<double>(t.x1a - t.x1b), dy = static_cast<double>(t.y1a - t.y1b);
    if (fused) {  // result = M0 (r * original + d) + M2, from the decode at ds_scale
      double ds_scale = 1;
      const Image img = load_image(ds, idx[i], std::min(r * M[0], 1.0), &ds_scale);
      const double k = M[0] * r / ds_scale;
      auto edge = [](double v) { return static_cast<int64_t>(std::ceil(v - 0.5)); };  // first pixel centre >= v
      resample_into(img, k, M[0] * dx + M[2], k, M[4] * dy + M[5], &out.image, edge(M[0] * t.x1a + M[2]),
                    edge(M[4] * t.y1a + M[5]), edge(M[0] * t.x2a + M[2]), edge(M[4] * t.y2a + M[5]), 114, true);
    } else {
      const Image img = load_scaled(ds, idx[i], r);
      for (int64_t y = t.y1a; y < t.y2a; ++y) {
        std::memcpy(out.image.at(y, t.x1a), img.at(t.y1b + (y - t.y1a), t.x1b), static_cast<size_t>(t.x2a - t.x1a) * 3);
      }
    }
    for (Box b : scaled_boxes(rec.boxes, r, dx, dy)) out.boxes.push_back(clip_box(b, 2.0 * s, 2.0 * s));
  }
  if (fused) {
    out.boxes = transform_boxes(out.boxes, M, scale, s, s, p.candidates);
  } else {
    random_perspective(&out.image, &out.boxes, aff, -s / 2, rng, p.candidates);
  }
  return out;
}

DetectionSample make_detection_sample(const DetectionDataset& ds, int64_t index, int64_t h, int64_t w,
                                      const DetectionPipeline& p, SampleRng& rng) {
  const DetectionRecord& rec = ds.record(index);
  DetectionSample out;
  const bool can_mosaic = p.augment && !p.rect && h == w;
  if (can_mosaic && rng.uniform() < p.hyp.mosaic) {
    out = load_mosaic(ds, index, h, p, rng);
    if (rng.uniform() < p.hyp.mixup) {
      const DetectionSample other = load_mosaic(ds, rng.randint(0, ds.size()), h, p, rng);
      const double r = sample_beta(rng, 32.0, 32.0);
      for (size_t k = 0; k < out.image.pixels.size(); ++k) {
        out.image.pixels[k] = static_cast<uint8_t>(out.image.pixels[k] * r + other.image.pixels[k] * (1 - r));
      }
      out.boxes.insert(out.boxes.end(), other.boxes.begin(), other.boxes.end());
    }
  } else {
    // ultralytics: load_image brings the long side to img_size (up or down), letterbox then fits
    // the batch shape, scaling up only when augmenting. Done here as one resize from the file.
    const double r_load = static_cast<double>(p.img_size) / static_cast<double>(std::max(rec.height, rec.width));
    const double max_scale = p.augment ? 1e300 : r_load;
    const double r = std::min({static_cast<double>(h) / rec.height, static_cast<double>(w) / rec.width, max_scale});
    double ds_scale = 1.0;
    const Image img = load_image(ds, index, std::min(r, 1.0), &ds_scale);
    Letterboxed lb = letterbox(img, rec.height, rec.width, h, w, max_scale, ds_scale);
    out.image = std::move(lb.image);
    out.info.letterbox = lb.params;
    out.info.mappable = true;
    for (const Box& b : rec.boxes) out.boxes.push_back(letterbox_box(b, lb.params));
    if (p.augment) {
      Mat3 m{};
      random_perspective(&out.image, &out.boxes, p.hyp.affine(), 0, rng, p.candidates, &m);
      if (m != mat3_identity()) out.info.mappable = false;
    }
  }
  if (p.augment) {
    augment_hsv(&out.image, p.hyp.hsv_h, p.hyp.hsv_s, p.hyp.hsv_v, rng);
    if (rng.uniform() < p.hyp.flipud) flip_ud(&out.image, &out.boxes), out.info.mappable = false;
    if (rng.uniform() < p.hyp.fliplr) flip_lr(&out.image, &out.boxes), out.info.mappable = false;
  }
  out.info.index = index;
  out.info.path = rec.image;
  out.info.h0 = rec.height;
  out.info.w0 = rec.width;
  return out;
}

// ---- batches
Batch collate_detection(std::vector<DetectionSample>& samples, bool pinned) {
  RG_CHECK(!samples.empty(), "collate_detection: empty batch");
  const auto B = static_cast<int64_t>(samples.size());
  const int64_t H = samples[0].image.height, W = samples[0].image.width;
  int64_t nboxes = 0;
  for (const auto& s : samples) {
    RG_CHECK(s.image.height == H && s.image.width == W && s.image.channels == 3, "collate_detection: '", s.info.path,
             "' is ", s.image.height, "x", s.image.width, "x", s.image.channels, " but the batch is ", H, "x", W, "x3");
    nboxes += static_cast<int64_t>(s.boxes.size());
  }
  Batch out;
  out.images = empty_host({B, 3, H, W}, DType::u8, pinned);
  out.targets = empty_host({nboxes, 6}, DType::f32, pinned, /*round_up=*/true);
  uint8_t* img = out.images.data<uint8_t>();
  float* t = out.targets.data<float>();
  const int64_t hw = H * W;
  for (int64_t i = 0; i < B; ++i) {
    DetectionSample& s = samples[static_cast<size_t>(i)];
    const uint8_t* src = s.image.pixels.data();
    uint8_t* r = img + i * 3 * hw;
    uint8_t* g = r + hw;
    uint8_t* b = g + hw;
    for (int64_t k = 0; k < hw; ++k) {
      r[k] = src[3 * k], g[k] = src[3 * k + 1], b[k] = src[3 * k + 2];
    }
    for (const Box& bx : s.boxes) {
      *t++ = static_cast<float>(i);
      *t++ = static_cast<float>(bx.cls);
      *t++ = (bx.x1 + bx.x2) / 2 / static_cast<float>(W);
      *t++ = (bx.y1 + bx.y2) / 2 / static_cast<float>(H);
      *t++ = bx.width() / static_cast<float>(W);
      *t++ = bx.height() / static_cast<float>(H);
    }
    out.info.push_back(std::move(s.info));
  }
  return out;
}

BatchFn detection_batch_fn(std::shared_ptr<const DetectionDataset> ds, DetectionPipeline p) {
  RG_CHECK(ds && ds->size() > 0, "detection loader: empty dataset");
  RG_CHECK(p.stride > 0 && p.img_size > 0 && p.img_size % p.stride == 0, "detection loader: img_size ", p.img_size,
           " must be a positive multiple of the stride ", p.stride);
  RG_CHECK(!(p.rect && p.multi_scale), "detection loader: rectangular batches and multi-scale exclude each other");
  return [ds = std::move(ds), p](const BatchRequest& req) {
    int64_t H = p.img_size, W = p.img_size;
    if (p.rect) {
      std::tie(H, W) = rect_batch_shape(*ds, req.indices, p.img_size, p.stride, p.rect_pad);
    } else if (p.multi_scale) {
      H = W = multi_scale_size(req.seed, req.epoch, req.batch_index, p.img_size, p.stride);
    }
    std::vector<DetectionSample> samples;
    samples.reserve(req.indices.size());
    std::vector<CorruptSample> corrupt;
    for (int64_t idx : req.indices) {
      // A sample whose image (or one of its mosaic's) fails to load is replaced: Note [Corrupt samples].
      for (int64_t src = idx, attempt = 1;; ++attempt) {
        try {
          SampleRng rng(req.seed, static_cast<uint64_t>(req.epoch), static_cast<uint64_t>(src));
          samples.push_back(make_detection_sample(*ds, src, H, W, p, rng));
          break;
        } catch (const SampleLoadError& e) {
          if (req.strict) throw;
          RG_CHECK(attempt <= kMaxReplacements, "detection loader: ", kMaxReplacements, " replacements of sample ",
                   idx, " failed to load too; the last: ", e.what());
          const int64_t next = replacement_index(req.seed, req.epoch, idx, static_cast<int>(attempt),
                                                 req.shard ? *req.shard : req.indices);
          corrupt.push_back(CorruptSample{src, next, e.path(), e.what()});
          src = next;
        }
      }
    }
    Batch b = collate_detection(samples, req.pinned);
    b.corrupt = std::move(corrupt);
    return b;
  };
}

}  // namespace rg::data
