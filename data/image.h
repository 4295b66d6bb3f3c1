// Image: 8-bit pixels, height x width x channels (interleaved, row-major), with JPEG (libjpeg-turbo)
// and PNG (stb_image) decoding and encoding, and the geometric helpers the transforms need.
// Every decode/encode error names the file: "cannot decode 'x.jpg': not a JPEG or PNG file".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rg::data {

struct Image {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // (H, W, C), row-major

  Image() = default;
  Image(int64_t h, int64_t w, int64_t c, uint8_t fill = 0);
  bool empty() const { return pixels.empty(); }
  uint8_t* at(int64_t y, int64_t x) { return pixels.data() + (y * width + x) * channels; }
  const uint8_t* at(int64_t y, int64_t x) const { return pixels.data() + (y * width + x) * channels; }
  bool operator==(const Image& o) const = default;
};

enum class ImageFormat { Unknown, Jpeg, Png };
// From the first bytes (JPEG: FF D8 FF; PNG: 89 'P' 'N' 'G' 0D 0A 1A 0A).
ImageFormat sniff_format(const uint8_t* data, size_t size);
// From the file name's extension: .jpg/.jpeg -> Jpeg, .png -> Png (case-insensitive), else Unknown.
ImageFormat format_from_extension(const std::string& path);

// Decodes JPEG or PNG bytes (format sniffed from the content, not the name). channels: 0 keeps the
// file's own (1 gray, 3 RGB, PNG also 2 and 4), 1 converts to gray, 3 to RGB (gray replicated,
// alpha dropped). `name` is used in error messages only. A truncated JPEG is an error (PIL's
// "image file is truncated"), not a silently grey-filled picture.
Image decode_image(const uint8_t* data, size_t size, const std::string& name, int channels = 3);
Image read_image(const std::string& path, int channels = 3);

// RGB decode that may shrink a JPEG while decoding (libjpeg's DCT scaling, far cheaper than a full
// decode and a resize): by the smallest of 1/8, 1/4, 1/2 and 1 that is >= min_scale (the factors
// libjpeg-turbo has SIMD code for; its other M/8 decode slower than full size). The result shows
// the picture at exactly that scale (pixel edges x -> x * M / 8, size ceil(w * M / 8)); *scale
// receives the factor (1 for PNG and for min_scale > 1/2).
Image read_image_reduced(const std::string& path, double min_scale, double* scale);

// What a file's header says, without decoding the pixels: the format, the size and whether the
// data ends as a complete file does (a JPEG's EOI marker, a PNG's IEND chunk). `error` is empty
// when the header parsed; otherwise it says what is wrong ("no such file", "not a JPEG or PNG
// file", libjpeg's message ...).
struct ImageHeader {
  ImageFormat format = ImageFormat::Unknown;
  int64_t height = 0, width = 0, channels = 0;
  bool complete = false;
  std::string error;
};
ImageHeader probe_image(const std::string& path);

// Encodes to bytes; JPEG takes 1 or 3 channels (quality 1..100, 4:2:0 subsampling), PNG 1..4.
std::string encode_jpeg(const Image& img, int quality = 95, const std::string& name = "<memory>");
std::string encode_png(const Image& img, const std::string& name = "<memory>");
// Writes by extension (.jpg/.jpeg or .png) to `path` directly (callers wanting atomicity write to a
// temporary name and rename). Errors name the path.
void write_image(const std::string& path, const Image& img, int quality = 95);

// ---- geometry (all exact integer work, except resize)
Image hflip(const Image& img);
// The window [top, top + h) x [left, left + w); parts outside the image read `fill` (so a crop
// with negative top/left is torchvision's pad-then-crop).
Image crop(const Image& img, int64_t top, int64_t left, int64_t h, int64_t w, uint8_t fill = 0);
// Bilinear resize with half-pixel centres (align_corners=False, no antialias), rounded to nearest.
Image resize_bilinear(const Image& img, int64_t out_h, int64_t out_w);

}  // namespace rg::data
