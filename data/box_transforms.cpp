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
namespace {
// Source taps of one axis: for each result position, the byte offsets of its two neighbours (-1:
// outside, reads the fill) and the weight of the second, in 11-bit fixed point.
struct Taps {
  std::vector<int64_t> a, b;
  std::vector<int32_t> w;
};
Taps axis_taps(int64_t from, int64_t to, double scale, double shift, int64_t n, int64_t stride, bool clamp) {
  Taps t;
  const auto m = static_cast<size_t>(to - from);
  t.a.resize(m), t.b.resize(m), t.w.resize(m);
  for (int64_t i = from; i < to; ++i) {
    double u = (i + 0.5 - shift) / scale - 0.5;
    if (clamp) u = std::clamp(u, 0.0, static_cast<double>(n - 1));
    const auto fu = static_cast<int64_t>(std::floor(u));
    const int32_t w = static_cast<int32_t>(std::lround((u - static_cast<double>(fu)) * kOne));
    const int64_t i0 = fu, i1 = clamp ? std::min(fu + 1, n - 1) : fu + 1;
    const auto k = static_cast<size_t>(i - from);
    t.a[k] = (i0 >= 0 && i0 < n) ? i0 * stride : -1;
    t.b[k] = (i1 >= 0 && i1 < n) ? i1 * stride : -1;
    t.w[k] = w;
    if (w == kOne) t.a[k] = t.b[k], t.w[k] = 0;  // rounding reached the next pixel
  }
  return t;
}
}  // namespace

void resample_into(const Image& src, double sx, double tx, double sy, double ty, Image* dst, int64_t x0, int64_t y0,
                   int64_t x1, int64_t y1, uint8_t fill, bool clamp) {
  RG_CHECK(src.channels == 3 && dst->channels == 3 && src.height > 0 && src.width > 0, "resample: expected RGB images");
  RG_CHECK(sx > 0 && sy > 0, "resample: scales must be positive, got ", sx, ", ", sy);
  x0 = std::max<int64_t>(x0, 0), y0 = std::max<int64_t>(y0, 0);
  x1 = std::min(x1, dst->width), y1 = std::min(y1, dst->height);
  if (x0 >= x1 || y0 >= y1) return;
  const Taps tx_ = axis_taps(x0, x1, sx, tx, src.width, 3, clamp);
  const Taps ty_ = axis_taps(y0, y1, sy, ty, src.height, src.width * 3, clamp);
  const int64_t w = x1 - x0;
  std::vector<int32_t> row0(static_cast<size_t>(w) * 3), row1(static_cast<size_t>(w) * 3);
  auto horizontal = [&](int64_t off, int32_t* out) {  // off: byte offset of the source row, -1: fill
    if (off < 0) {
      std::fill(out, out + w * 3, fill * kOne);
      return;
    }
    const uint8_t* s = src.pixels.data() + off;
    for (int64_t x = 0; x < w; ++x) {
      const int64_t a = tx_.a[static_cast<size_t>(x)], b = tx_.b[static_cast<size_t>(x)];
      const int32_t wb = tx_.w[static_cast<size_t>(x)], wa = kOne - wb;
      for (int c = 0; c < 3; ++c) {
        out[x * 3 + c] = (a >= 0 ? s[a + c] : fill) * wa + (b >= 0 ? s[b + c] : fill) * wb;
      }
    }
  };
  int64_t have0 = -2, have1 = -2;  // source row offsets in row0 / row1 (-1 is the fill row)
  for (int64_t y = y0; y < y1; ++y) {
    const auto k = static_cast<size_t>(y - y0);
    const int64_t a = ty_.a[k], b = ty_.b[k];
    const int32_t wb = ty_.w[k], wa = kOne - wb;
    if (a == have1 && a != have0) {
      std::swap(row0, row1);
      std::swap(have0, have1);
    }
    if (a != have0) horizontal(a, row0.data()), have0 = a;
    if (b != have1) horizontal(b, row1.data()), have1 = b;
    uint8_t* o = dst->at(y, x0);
    const int32_t* r0 = row0.data();
    const int32_t* r1 = row1.data();
    for (int64_t i = 0; i < w * 3; ++i) {
      o[i] = static_cast<uint8_t>((static_cast<int64_t>(r0[i]) * wa + static_cast<int64_t>(r1[i]) * wb +
                                   (int64_t{1} << (2 * kFracBits - 1))) >> (2 * kFracBits));
    }
  }
}

Image resize_scaled(const Image& src, int64_t out_h, int64_t out_w, double scale_x, double scale_y) {
  RG_CHECK(src.channels == 3 && src.height > 0 && src.width > 0, "resize_scaled: expected a non-empty RGB image");
  RG_CHECK(out_h > 0 && out_w > 0 && scale_x > 0 && scale_y > 0, "resize_scaled: bad size ", out_h, "x", out_w,
           " or scale ", scale_x, ", ", scale_y);
  Image out(out_h, out_w, 3);
  resample_into(src, scale_x, 0, scale_y, 0, &out, 0, 0, out_w, out_h, 0, true);
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
  if (m[1] == 0 && m[3] == 0 && m[6] == 0 && m[7] == 0 && m[8] == 1 && m[0] > 0 && m[4] > 0) {  // scale + shift
    Image out(out_h, out_w, 3);
    resample_into(src, m[0], m[2], m[4], m[5], &out, 0, 0, out_w, out_h, fill, false);
    return out;
  }
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

Mat3 random_perspective_matrix(const AffineParams& p, int64_t in_h, int64_t in_w, int64_t border, SampleRng& rng,
                               double* scale) {
  const int64_t out_h = in_h + 2 * border, out_w = in_w + 2 * border;
  RG_CHECK(out_h > 0 && out_w > 0, "random_perspective: border ", border, " leaves no image of ", in_h, "x", in_w);
  Mat3 C = mat3_identity(), P = mat3_identity(), R = mat3_identity(), S = mat3_identity(), T = mat3_identity();
  C[2] = -in_w / 2.0;
  C[5] = -in_h / 2.0;
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
  if (scale) *scale = s;
  return mat3_mul(T, mat3_mul(S, mat3_mul(R, mat3_mul(P, C))));
}

Boxes transform_boxes(const Boxes& boxes, const Mat3& m, double scale, int64_t out_h, int64_t out_w,
                      const CandidateRule& rule) {
  Boxes kept;
  kept.reserve(boxes.size());
  const auto s = static_cast<float>(scale);
  for (const Box& b : boxes) {
    const Box t = clip_box(transform_box(b, m), static_cast<double>(out_w), static_cast<double>(out_h));
    if (box_candidate({b.x1 * s, b.y1 * s, b.x2 * s, b.y2 * s, b.cls}, t, rule)) kept.push_back(t);
  }
  return kept;
}

void random_perspective(Image* img, Boxes* boxes, const AffineParams& p, int64_t border, SampleRng& rng,
                        const CandidateRule& rule, Mat3* m_out) {
  double s = 1;
  const Mat3 M = random_perspective_matrix(p, img->height, img->width, border, rng, &s);
  if (m_out) *m_out = M;
  const int64_t out_h = img->height + 2 * border, out_w = img->width + 2 * border;
  if (border != 0 || M != mat3_identity()) *img = warp_perspective(*img, M, out_h, out_w, 114);
  *boxes = transform_boxes(*boxes, M, s, out_h, out_w, rule);
}

// ---- colour
void apply_hsv_gains(Image* img, double gh, double gs, double gv) {
  RG_CHECK(img->channels == 3, "augment_hsv: expected an RGB image, got ", img->channels, " channels");
  uint8_t lut_h[181], lut_s[256], lut_v[256];
  for (int x = 0; x < 180; ++x) lut_h[x] = static_cast<uint8_t>(std::fmod(x * gh, 180.0));
  lut_h[180] = lut_h[0];
  for (int x = 0; x < 256; ++x) {
    lut_s[x] = static_cast<uint8_t>(std::clamp(x * gs, 0.0, 255.0));
    lut_v[x] = static_cast<uint8_t>(std::clamp(x * gv, 0.0, 255.0));
  }
  // OpenCV's 8-bit RGB -> HSV in 12-bit fixed point: S = 255 diff / V, H = 30 h' / diff with h' in
  // [-diff, 5 diff), rounded; and HSV -> RGB by the six hue sectors of 30 (60 degrees), rounded.
  static const auto tables = [] {
    std::array<std::array<int32_t, 256>, 2> t{};  // 1 / V for S, and 1 / diff for H
    for (int k = 1; k < 256; ++k) {
      t[0][static_cast<size_t>(k)] = static_cast<int32_t>(std::lround((255 << 12) / static_cast<double>(k)));
      t[1][static_cast<size_t>(k)] = static_cast<int32_t>(std::lround((30 << 12) / static_cast<double>(k)));
    }
    return t;
  }();
  const auto& sdiv = tables[0];
  const auto& hdiv = tables[1];
  int32_t lh[181], ls[256], lv[256];  // int tables: the block loop below vectorises (gathers)
  for (int x = 0; x < 181; ++x) lh[x] = lut_h[x];
  for (int x = 0; x < 256; ++x) ls[x] = lut_s[x], lv[x] = lut_v[x];
  uint8_t* p = img->pixels.data();
  const auto n = static_cast<int64_t>(img->pixels.size() / 3);
  constexpr int kBlock = 64;
  constexpr int kDen = 255 * 30;
  int32_t R[kBlock], G[kBlock], B[kBlock];
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int m = static_cast<int>(std::min<int64_t>(kBlock, n - i0));
    uint8_t* q = p + i0 * 3;
    for (int k = 0; k < m; ++k) R[k] = q[3 * k], G[k] = q[3 * k + 1], B[k] = q[3 * k + 2];
    for (int k = m; k < kBlock; ++k) R[k] = G[k] = B[k] = 0;  // lanes past the end: valid inputs
    for (int k = 0; k < kBlock; ++k) {  // branch-free, one pixel per lane
      const int32_t r = R[k], g = G[k], b = B[k];
      const int32_t v = std::max(r, std::max(g, b)), mn = std::min(r, std::min(g, b)), diff = v - mn;
      const int32_t s8 = (diff * sdiv[static_cast<size_t>(v & 255)] + (1 << 11)) >> 12;
      const int32_t hr = v == r ? g - b : (v == g ? b - r + 2 * diff : r - g + 4 * diff);
      int32_t h = (hr * hdiv[static_cast<size_t>(diff & 255)] + (1 << 11)) >> 12;
      h = h < 0 ? h + 180 : h;
      const int32_t H = lh[h], S = ls[s8 & 255], V = lv[v & 255];
      // t1 = V (1 - S), t2 = V (1 - S f), t3 = V (1 - S (1 - f)) with f = (H mod 30) / 30, over 255 * 30
      const int32_t sector = (H * 2185) >> 16, f = H - sector * 30;  // H / 30 for H < 180
      const int32_t t0 = V, t1 = (V * (255 - S) * 30 + kDen / 2) / kDen, t2 = (V * (kDen - S * f) + kDen / 2) / kDen,
                    t3 = (V * (kDen - S * (30 - f)) + kDen / 2) / kDen;
      // sectors 0..5 of (R, G, B): (t0 t3 t1) (t2 t0 t1) (t1 t0 t3) (t1 t2 t0) (t3 t1 t0) (t0 t1 t2)
      R[k] = sector == 0 || sector == 5 ? t0 : sector == 1 ? t2 : sector <= 3 ? t1 : t3;
      G[k] = sector == 0 ? t3 : sector <= 2 ? t0 : sector == 3 ? t2 : t1;
      B[k] = sector <= 1 ? t1 : sector == 2 ? t3 : sector <= 4 ? t0 : t2;
    }
    for (int k = 0; k < m; ++k) {
      q[3 * k] = static_cast<uint8_t>(R[k]), q[3 * k + 1] = static_cast<uint8_t>(G[k]), q[3 * k + 2] = static_cast<uint8_t>(B[k]);
    }
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
