// Box-aware transforms: fixed-point bilinear resampling (11-bit weights), letterbox (Note
// [Letterbox]), random perspective with box candidates (Note [Box candidates]), HSV and flips.
#include "data/box_transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace rg::data {

namespace {
constexpr double kPi = 3.14159265358979323846;
constexpr int kFracBits = 11;
constexpr int kOne = 1 << kFracBits;

inline uint8_t blend2(int a, int b, int w) { return static_cast<uint8_t>((a * (kOne - w) + b * w + kOne / 2) >> kFracBits); }
}  // namespace

Mat3 mat3_identity() { return {1, 0, 0, 0, 1, 0, 0, 0, 1}; }

Mat3 mat3_mul(const Mat3& a, const Mat3& b) {
  Mat3 c{};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += a[i * 3 + k] * b[k * 3 + j];
      c[i * 3 + j] = s;
    }
  }
  return c;
}

namespace {
Mat3 mat3_inverse(const Mat3& m) {
  const double a = m[0], b = m[1], c = m[2], d = m[3], e = m[4], f = m[5], g = m[6], h = m[7], i = m[8];
  const double A = e * i - f * h, B = -(d * i - f * g), C = d * h - e * g;
  const double det = a * A + b * B + c * C;
  RG_CHECK(std::fabs(det) > 1e-12, "warp: the transform is singular");
  const double s = 1.0 / det;
  return {A * s, -(b * i - c * h) * s, (b * f - c * e) * s, B * s, (a * i - c * g) * s, -(a * f - c * d) * s,
          C * s, -(a * h - b * g) * s, (a * e - b * d) * s};
}
}  // namespace

// ---- resampling
Image resize_scaled(const Image& src, int64_t out_h, int64_t out_w, double scale_x, double scale_y) {
  RG_CHECK(src.channels == 3 && src.height > 0 && src.width > 0, "resize_scaled: expected a non-empty RGB image");
  RG_CHECK(out_h > 0 && out_w > 0 && scale_x > 0 && scale_y > 0, "resize_scaled: bad size ", out_h, "x", out_w,
           " or scale ", scale_x, ", ", scale_y);
  Image out(out_h, out_w, 3);
  std::vector<int32_t> xo(static_cast<size_t>(out_w) * 2), xw(static_cast<size_t>(out_w));
  for (int64_t x = 0; x < out_w; ++x) {
    const double fx = std::clamp((x + 0.5) / scale_x - 0.5, 0.0, static_cast<double>(src.width - 1));
    const auto x0 = static_cast<int32_t>(fx);
    xo[2 * x] = x0 * 3;
    xo[2 * x + 1] = std::min<int32_t>(x0 + 1, static_cast<int32_t>(src.width - 1)) * 3;
    xw[x] = static_cast<int32_t>(std::lround((fx - x0) * kOne));
  }
  std::vector<int32_t> row0(static_cast<size_t>(out_w) * 3), row1(static_cast<size_t>(out_w) * 3);
  auto horizontal = [&](int64_t sy, int32_t* dst) {
    const uint8_t* s = src.at(sy, 0);
    for (int64_t x = 0; x < out_w; ++x) {
      const uint8_t *a = s + xo[2 * x], *b = s + xo[2 * x + 1];
      const int32_t w = xw[x];
      for (int c = 0; c < 3; ++c) dst[x * 3 + c] = a[c] * (kOne - w) + b[c] * w;
    }
  };
  int64_t have0 = -1, have1 = -1;
  for (int64_t y = 0; y < out_h; ++y) {
    const double fy = std::clamp((y + 0.5) / scale_y - 0.5, 0.0, static_cast<double>(src.height - 1));
    const auto y0 = static_cast<int64_t>(fy);
    const int64_t y1 = std::min(y0 + 1, src.height - 1);
    const auto wy = static_cast<int32_t>(std::lround((fy - y0) * kOne));
    if (y0 == have1) {  // slide the cached rows down
      std::swap(row0, row1);
      have0 = have1;
      have1 = -1;
    }
    if (y0 != have0) horizontal(y0, row0.data()), have0 = y0;
    if (y1 != have1) horizontal(y1, row1.data()), have1 = y1;
    uint8_t* o = out.at(y, 0);
    const int32_t* r0 = row0.data();
    const int32_t* r1 = row1.data();
    for (int64_t k = 0; k < out_w * 3; ++k) {
      o[k] = static_cast<uint8_t>((static_cast<int64_t>(r0[k]) * (kOne - wy) + static_cast<int64_t>(r1[k]) * wy +
                                   (int64_t{1} << (2 * kFracBits - 1))) >> (2 * kFracBits));
    }
  }
  return out;
}

namespace {
// Bilinear sample at (u, v) in 11-bit fixed point (source pixel index coordinates); outside
// neighbours read `fill`.
inline void sample(const Image& src, int32_t ui, int32_t vi, uint8_t fill, uint8_t* o) {
  const int32_t x0 = ui >> kFracBits, y0 = vi >> kFracBits;
  const int32_t wx = ui & (kOne - 1), wy = vi & (kOne - 1);
  const auto W = static_cast<int32_t>(src.width), H = static_cast<int32_t>(src.height);
  if (x0 >= 0 && y0 >= 0 && x0 + 1 < W && y0 + 1 < H) {
    const uint8_t* a = src.at(y0, x0);
    const uint8_t* b = a + static_cast<size_t>(W) * 3;
    for (int c = 0; c < 3; ++c) {
      const int32_t top = a[c] * (kOne - wx) + a[c + 3] * wx;
      const int32_t bot = b[c] * (kOne - wx) + b[c + 3] * wx;
      o[c] = static_cast<uint8_t>((static_cast<int64_t>(top) * (kOne - wy) + static_cast<int64_t>(bot) * wy +
                                   (int64_t{1} << (2 * kFracBits - 1))) >> (2 * kFracBits));
    }
    return;
  }
  if (x0 + 1 < 0 || y0 + 1 < 0 || x0 >= W || y0 >= H) {
    o[0] = o[1] = o[2] = fill;
    return;
  }
  auto px = [&](int32_t y, int32_t x, int c) -> int32_t {
    return (x >= 0 && y >= 0 && x < W && y < H) ? src.at(y, x)[c] : fill;
  };
  for (int c = 0; c < 3; ++c) {
    const int32_t top = px(y0, x0, c) * (kOne - wx) + px(y0, x0 + 1, c) * wx;
    const int32_t bot = px(y0 + 1, x0, c) * (kOne - wx) + px(y0 + 1, x0 + 1, c) * wx;
    o[c] = static_cast<uint8_t>((static_cast<int64_t>(top) * (kOne - wy) + static_cast<int64_t>(bot) * wy +
                                 (int64_t{1} << (2 * kFracBits - 1))) >> (2 * kFracBits));
  }
}

inline int32_t to_fixed(double v) {
  return static_cast<int32_t>(std::lrint(std::clamp(v, -1e6, 1e6) * kOne));
}
}  // namespace

Image warp_perspective(const Image& src, const Mat3& m, int64_t out_h, int64_t out_w, uint8_t fill) {
  RG_CHECK(src.channels == 3, "warp_perspective: expected an RGB image, got ", src.channels, " channels");
  RG_CHECK(out_h > 0 && out_w > 0, "warp_perspective: bad output size ", out_h, "x", out_w);
  const Mat3 inv = mat3_inverse(m);
  const bool affine = inv[6] == 0 && inv[7] == 0;
  Image out(out_h, out_w, 3);
  for (int64_t y = 0; y < out_h; ++y) {
    const double py = y + 0.5;
    uint8_t* o = out.at(y, 0);
    if (affine) {
      const double s = 1.0 / inv[8];
      double u = (inv[0] * 0.5 + inv[1] * py + inv[2]) * s - 0.5, v = (inv[3] * 0.5 + inv[4] * py + inv[5]) * s - 0.5;
      const double du = inv[0] * s, dv = inv[3] * s;
      for (int64_t x = 0; x < out_w; ++x, u += du, v += dv) sample(src, to_fixed(u), to_fixed(v), fill, o + x * 3);
    } else {
      for (int64_t x = 0; x < out_w; ++x) {
        const double px = x + 0.5;
        const double w = inv[6] * px + inv[7] * py + inv[8];
        const double u = (inv[0] * px + inv[1] * py + inv[2]) / w - 0.5, v = (inv[3] * px + inv[4] * py + inv[5]) / w - 0.5;
        sample(src, to_fixed(u), to_fixed(v), fill, o + x * 3);
      }
    }
  }
  return out;
}

Box transform_box(const Box& b, const Mat3& m) {
  const double xs[4] = {b.x1, b.x2, b.x1, b.x2}, ys[4] = {b.y1, b.y2, b.y2, b.y1};
  double x1 = 1e300, y1 = 1e300, x2 = -1e300, y2 = -1e300;
  for (int k = 0; k < 4; ++k) {
    const double w = m[6] * xs[k] + m[7] * ys[k] + m[8];
    const double x = (m[0] * xs[k] + m[1] * ys[k] + m[2]) / w, y = (m[3] * xs[k] + m[4] * ys[k] + m[5]) / w;
    x1 = std::min(x1, x), x2 = std::max(x2, x), y1 = std::min(y1, y), y2 = std::max(y2, y);
  }
  return {static_cast<float>(x1), static_cast<float>(y1), static_cast<float>(x2), static_cast<float>(y2), b.cls};
}

// ---- letterbox
Letterboxed letterbox(const Image& src, int64_t h0, int64_t w0, int64_t out_h, int64_t out_w, double max_scale,
                      double src_scale, uint8_t fill) {
  RG_CHECK(h0 > 0 && w0 > 0 && out_h > 0 && out_w > 0, "letterbox: bad sizes ", h0, "x", w0, " -> ", out_h, "x", out_w);
  const double r = std::min({static_cast<double>(out_h) / h0, static_cast<double>(out_w) / w0, max_scale});
  const int64_t nw = std::max<int64_t>(1, std::llround(w0 * r)), nh = std::max<int64_t>(1, std::llround(h0 * r));
  const double dw = (out_w - nw) / 2.0, dh = (out_h - nh) / 2.0;
  const int64_t left = std::llround(dw - 0.1), top = std::llround(dh - 0.1);
  Letterboxed res;
  res.params = {r, static_cast<double>(left), static_cast<double>(top)};
  const double k = r / src_scale;  // source image pixels -> result pixels
  const bool same = nw == src.width && nh == src.height && std::fabs(k - 1.0) < 1e-12;
  const Image resized = same ? src : resize_scaled(src, nh, nw, k, k);
  if (nw == out_w && nh == out_h) {
    res.image = resized;
    return res;
  }
  res.image = Image(out_h, out_w, 3, fill);
  for (int64_t y = 0; y < nh; ++y) {
    std::memcpy(res.image.at(top + y, left), resized.at(y, 0), static_cast<size_t>(nw) * 3);
  }
  return res;
}

Box letterbox_box(const Box& b, const LetterboxParams& p) {
  return {static_cast<float>(b.x1 * p.scale + p.pad_x), static_cast<float>(b.y1 * p.scale + p.pad_y),
          static_cast<float>(b.x2 * p.scale + p.pad_x), static_cast<float>(b.y2 * p.scale + p.pad_y), b.cls};
}

Box unletterbox_box(const Box& b, const LetterboxParams& p, int64_t h0, int64_t w0) {
  const Box o{static_cast<float>((b.x1 - p.pad_x) / p.scale), static_cast<float>((b.y1 - p.pad_y) / p.scale),
              static_cast<float>((b.x2 - p.pad_x) / p.scale), static_cast<float>((b.y2 - p.pad_y) / p.scale), b.cls};
  return clip_box(o, static_cast<double>(w0), static_cast<double>(h0));
}

void unletterbox_xyxy(float* rows, int64_t n, int64_t stride, const ImageInfo& info) {
  RG_CHECK(stride >= 4, "unletterbox_xyxy: rows need 4 coordinates, stride ", stride);
  for (int64_t i = 0; i < n; ++i) {
    float* r = rows + i * stride;
    const Box b = unletterbox_box({r[0], r[1], r[2], r[3], 0}, info.letterbox, info.h0, info.w0);
    r[0] = b.x1, r[1] = b.y1, r[2] = b.x2, r[3] = b.y2;
  }
}

// ---- random affine / perspective
bool box_candidate(const Box& before, const Box& after, const CandidateRule& rule) {
  constexpr double eps = 1e-16;
  const double w1 = before.width(), h1 = before.height(), w2 = after.width(), h2 = after.height();
  const double ar = std::max(w2 / (h2 + eps), h2 / (w2 + eps));
  return w2 > rule.wh_thr && h2 > rule.wh_thr && w2 * h2 / (w1 * h1 + eps) > rule.area_thr && ar < rule.ar_thr;
}

void random_perspective(Image* img, Boxes* boxes, const AffineParams& p, int64_t border, SampleRng& rng,
                        const CandidateRule& rule, Mat3* m_out) {
  const int64_t out_h = img->height + 2 * border, out_w = img->width + 2 * border;
  RG_CHECK(out_h > 0 && out_w > 0, "random_perspective: border ", border, " leaves no image of ", img->height, "x", img->width);
  Mat3 C = mat3_identity(), P = mat3_identity(), R = mat3_identity(), S = mat3_identity(), T = mat3_identity();
  C[2] = -img->width / 2.0;
  C[5] = -img->height / 2.0;
  P[6] = rng.uniform(-p.perspective, p.perspective);
  P[7] = rng.uniform(-p.perspective, p.perspective);
  const double a = rng.uniform(-p.degrees, p.degrees) * kPi / 180.0;
  const double s = rng.uniform(1 - p.scale, 1 + p.scale);
  // OpenCV's getRotationMatrix2D(centre 0, angle a, scale s): counter-clockwise on screen.
  R[0] = s * std::cos(a), R[1] = s * std::sin(a), R[3] = -s * std::sin(a), R[4] = s * std::cos(a);
  S[1] = std::tan(rng.uniform(-p.shear, p.shear) * kPi / 180.0);
  S[3] = std::tan(rng.uniform(-p.shear, p.shear) * kPi / 180.0);
  T[2] = rng.uniform(0.5 - p.translate, 0.5 + p.translate) * out_w;
  T[5] = rng.uniform(0.5 - p.translate, 0.5 + p.translate) * out_h;
  const Mat3 M = mat3_mul(T, mat3_mul(S, mat3_mul(R, mat3_mul(P, C))));
  if (m_out) *m_out = M;
  if (border != 0 || M != mat3_identity()) *img = warp_perspective(*img, M, out_h, out_w, 114);
  Boxes kept;
  kept.reserve(boxes->size());
  for (const Box& b : *boxes) {
    const Box t = clip_box(transform_box(b, M), static_cast<double>(out_w), static_cast<double>(out_h));
    const Box before{b.x1 * static_cast<float>(s), b.y1 * static_cast<float>(s), b.x2 * static_cast<float>(s),
                     b.y2 * static_cast<float>(s), b.cls};
    if (box_candidate(before, t, rule)) kept.push_back(t);
  }
  *boxes = std::move(kept);
}

// ---- colour
void apply_hsv_gains(Image* img, double gh, double gs, double gv) {
  RG_CHECK(img->channels == 3, "augment_hsv: expected an RGB image, got ", img->channels, " channels");
  uint8_t lut_h[180], lut_s[256], lut_v[256];
  for (int x = 0; x < 180; ++x) lut_h[x] = static_cast<uint8_t>(std::fmod(x * gh, 180.0));
  for (int x = 0; x < 256; ++x) {
    lut_s[x] = static_cast<uint8_t>(std::clamp(x * gs, 0.0, 255.0));
    lut_v[x] = static_cast<uint8_t>(std::clamp(x * gv, 0.0, 255.0));
  }
  // OpenCV's 8-bit RGB -> HSV: S = round(255 diff / V), H = round(30 h' / diff) with h' in [-diff, 5 diff).
  float inv[256];
  inv[0] = 0;
  for (int k = 1; k < 256; ++k) inv[k] = 1.0f / static_cast<float>(k);
  uint8_t* p = img->pixels.data();
  const size_t n = img->pixels.size() / 3;
  for (size_t i = 0; i < n; ++i, p += 3) {
    const int r = p[0], g = p[1], b = p[2];
    const int v = std::max(r, std::max(g, b)), mn = std::min(r, std::min(g, b)), diff = v - mn;
    int h = 0;
    if (diff) {
      const int hr = v == r ? g - b : (v == g ? b - r + 2 * diff : r - g + 4 * diff);
      h = static_cast<int>(std::lrint(30.0f * static_cast<float>(hr) * inv[diff]));
      if (h < 0) h += 180;
      if (h >= 180) h -= 180;
    }
    const int s = static_cast<int>(std::lrint(255.0f * static_cast<float>(diff) * inv[v]));
    // back to RGB (OpenCV's HSV -> RGB on the new values)
    const float hh = lut_h[h] * (6.0f / 180.0f), ss = lut_s[s] * (1.0f / 255.0f), vv = lut_v[v];
    int sector = static_cast<int>(hh);
    const float f = hh - static_cast<float>(sector);
    if (sector >= 6) sector = 0;
    const float t0 = vv, t1 = vv * (1 - ss), t2 = vv * (1 - ss * f), t3 = vv * (1 - ss * (1 - f));
    float R, G, B;
    switch (sector) {
      case 0: R = t0, G = t3, B = t1; break;
      case 1: R = t2, G = t0, B = t1; break;
      case 2: R = t1, G = t0, B = t3; break;
      case 3: R = t1, G = t2, B = t0; break;
      case 4: R = t3, G = t1, B = t0; break;
      default: R = t0, G = t1, B = t2; break;
    }
    p[0] = static_cast<uint8_t>(std::lrint(R));
    p[1] = static_cast<uint8_t>(std::lrint(G));
    p[2] = static_cast<uint8_t>(std::lrint(B));
  }
}

void augment_hsv(Image* img, double hgain, double sgain, double vgain, SampleRng& rng) {
  const double gh = rng.uniform(-1, 1) * hgain + 1, gs = rng.uniform(-1, 1) * sgain + 1, gv = rng.uniform(-1, 1) * vgain + 1;
  if (hgain == 0 && sgain == 0 && vgain == 0) return;
  apply_hsv_gains(img, gh, gs, gv);
}

void flip_lr(Image* img, Boxes* boxes) {
  const int64_t W = img->width;
  for (int64_t y = 0; y < img->height; ++y) {
    uint8_t* row = img->at(y, 0);
    for (int64_t x = 0; x < W / 2; ++x) std::swap_ranges(row + x * 3, row + x * 3 + 3, row + (W - 1 - x) * 3);
  }
  for (Box& b : *boxes) {
    const float x1 = static_cast<float>(W) - b.x2, x2 = static_cast<float>(W) - b.x1;
    b.x1 = x1, b.x2 = x2;
  }
}

void flip_ud(Image* img, Boxes* boxes) {
  const int64_t H = img->height;
  const size_t row = static_cast<size_t>(img->width) * 3;
  for (int64_t y = 0; y < H / 2; ++y) std::swap_ranges(img->at(y, 0), img->at(y, 0) + row, img->at(H - 1 - y, 0));
  for (Box& b : *boxes) {
    const float y1 = static_cast<float>(H) - b.y2, y2 = static_cast<float>(H) - b.y1;
    b.y1 = y1, b.y2 = y2;
  }
}

}  // namespace rg::data
