// Box-aware transforms on u8 RGB images (ultralytics' YOLOv3/v5 augmentation): letterbox and its
// inverse for predictions, bilinear resampling, random affine/perspective with the box-candidate
// rules, HSV jitter and flips. Boxes and pixels move together (Note [Box coordinates]).
#pragma once

#include <array>
#include <cstdint>

#include "data/box.h"
#include "data/image.h"
#include "data/sample_rng.h"

namespace rg::data {

// A 3x3 matrix, row-major, mapping source points to result points (homogeneous).
using Mat3 = std::array<double, 9>;
Mat3 mat3_identity();
Mat3 mat3_mul(const Mat3& a, const Mat3& b);  // a * b: b first

// ---- resampling (bilinear, pixel centres at +0.5, Note [Box coordinates])
// The result of size out_h x out_w shows src magnified by (scale_x, scale_y): result point p comes
// from source point p / scale. Samples beyond the source repeat its edge pixels.
Image resize_scaled(const Image& src, int64_t out_h, int64_t out_w, double scale_x, double scale_y);
// Writes the pixels [x0, x1) x [y0, y1) of *dst (clipped to it) from src mapped by result point =
// (sx, sy) * source point + (tx, ty): bilinear, separable, fixed point. Neighbours outside src read
// `fill`, or repeat src's edge pixels with `clamp`. The fast path of scale-and-shift warps.
void resample_into(const Image& src, double sx, double tx, double sy, double ty, Image* dst, int64_t x0, int64_t y0,
                   int64_t x1, int64_t y1, uint8_t fill, bool clamp);
// out_h x out_w result of mapping src through m (result point = m * source point, with the
// perspective divide when m's last row is not (0, 0, 1)); samples outside src blend with `fill`.
Image warp_perspective(const Image& src, const Mat3& m, int64_t out_h, int64_t out_w, uint8_t fill = 114);
// The box of the four corners of b mapped through m (not clipped).
Box transform_box(const Box& b, const Mat3& m);

// ---- letterbox
// Note [Letterbox]
// As ultralytics' letterbox(auto=False): r = min(out_h / h0, out_w / w0, max_scale) (its
// scaleup=False is max_scale = 1), the picture becomes round(w0 r) x round(h0 r), placed at left =
// round(dw - 0.1), top = round(dh - 0.1) with dw, dh half the leftover, and the rest is `fill`
// (114). ultralytics resizes twice (load_image to the long side, then letterbox); we resize once
// from the file, and the mapping is exact: batch point = original point * r + (left, top) for
// pixels and boxes alike, so unletterbox_box maps predictions back without the half-pixel slip of
// a float pad.
struct Letterboxed {
  Image image;
  LetterboxParams params;
};
// src shows an h0 x w0 original at src_scale (a reduced decode, read_image_reduced; 1 otherwise).
Letterboxed letterbox(const Image& src, int64_t h0, int64_t w0, int64_t out_h, int64_t out_w,
                      double max_scale = 1e300, double src_scale = 1.0, uint8_t fill = 114);
// Original pixels -> batch pixels.
Box letterbox_box(const Box& b, const LetterboxParams& p);
// A prediction in batch pixels (xyxy) -> original pixels, clipped to [0, w0] x [0, h0].
Box unletterbox_box(const Box& b, const LetterboxParams& p, int64_t h0, int64_t w0);
// In place on n rows of `stride` floats whose first four are x1, y1, x2, y2 (a (N, 6) prediction
// tensor's data, say): the same mapping as unletterbox_box.
void unletterbox_xyxy(float* rows, int64_t n, int64_t stride, const ImageInfo& info);

// ---- random affine / perspective
// ultralytics' hyperparameters (hyp.scratch*.yaml names); degrees and shear in degrees.
struct AffineParams {
  double degrees = 0.0, translate = 0.1, scale = 0.5, shear = 0.0, perspective = 0.0;
};
// Note [Box candidates]
// After a geometric transform a box is kept when, with (w1, h1) its size before (times the random
// scale) and (w2, h2) after clipping: w2 > wh_thr and h2 > wh_thr pixels, w2 h2 / (w1 h1) >
// area_thr, and max(w2 / h2, h2 / w2) < ar_thr: ultralytics' box_candidates with its current
// defaults (2 px, 0.1, 100).
struct CandidateRule {
  double wh_thr = 2.0, area_thr = 0.1, ar_thr = 100.0;
};
bool box_candidate(const Box& before_scaled, const Box& after, const CandidateRule& rule = {});

// ultralytics' random_perspective: M = T S R P C (centre, perspective, rotation and scale, shear,
// translation; draws in that order from rng), the result is (h + 2 border) x (w + 2 border) (border
// -s/2 crops a mosaic's 2s canvas to s), pixels warped with fill 114, boxes by their four corners,
// clipped, and filtered by box_candidate. The image is untouched when M is the identity and border 0.
// m_out (optional) receives M.
void random_perspective(Image* img, Boxes* boxes, const AffineParams& p, int64_t border, SampleRng& rng,
                        const CandidateRule& rule = {}, Mat3* m_out = nullptr);
// Its two halves: M for an in_h x in_w image (the draws, in that order; *scale gets the random
// scale), and the boxes through M, clipped to out_h x out_w and filtered by box_candidate.
Mat3 random_perspective_matrix(const AffineParams& p, int64_t in_h, int64_t in_w, int64_t border, SampleRng& rng,
                               double* scale = nullptr);
Boxes transform_boxes(const Boxes& boxes, const Mat3& m, double scale, int64_t out_h, int64_t out_w,
                      const CandidateRule& rule = {});

// ---- colour and flips
// ultralytics' augment_hsv: gains g = 1 + U(-1, 1) * (h, s, v) (three draws, always made); in
// OpenCV's 8-bit HSV (H in [0, 180)), H -> (H g_h) mod 180, S -> min(S g_s, 255), V -> min(V g_v, 255).
void augment_hsv(Image* img, double hgain, double sgain, double vgain, SampleRng& rng);
// The HSV mapping with given gains (tests and augment_hsv).
void apply_hsv_gains(Image* img, double gh, double gs, double gv);
void flip_lr(Image* img, Boxes* boxes);
void flip_ud(Image* img, Boxes* boxes);

}  // namespace rg::data
