// Image decoding/encoding: JPEG through libjpeg-turbo here, PNG through stb (data/image_stb.cpp);
// plus flip, crop (with fill outside) and bilinear resize.
#include "data/image.h"

#include <jpeglib.h>
#include <jerror.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>

#include "core/error.h"

namespace rg::data {

namespace detail {
Image decode_png_stb(const uint8_t* data, size_t size, const std::string& name, int channels);
std::string encode_png_stb(const Image& img, const std::string& name);
}  // namespace detail

Image::Image(int64_t h, int64_t w, int64_t c, uint8_t fill)
    : height(h), width(w), channels(c), pixels(static_cast<size_t>(h * w * c), fill) {
  RG_CHECK(h >= 0 && w >= 0 && c >= 1 && c <= 4, "Image: bad size ", h, "x", w, "x", c);
}

ImageFormat sniff_format(const uint8_t* d, size_t n) {
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return ImageFormat::Jpeg;
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (n >= 8 && std::memcmp(d, kPng, 8) == 0) return ImageFormat::Png;
  return ImageFormat::Unknown;
}

ImageFormat format_from_extension(const std::string& path) {
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos) return ImageFormat::Unknown;
  std::string ext = path.substr(dot + 1);
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (ext == "jpg" || ext == "jpeg") return ImageFormat::Jpeg;
  if (ext == "png") return ImageFormat::Png;
  return ImageFormat::Unknown;
}

// ---- JPEG (libjpeg-turbo)
// Note [libjpeg errors]
// libjpeg reports fatal errors through error_exit, which must not return: we longjmp back to the
// setjmp in the caller. Everything that changes between setjmp and a longjmp lives in a heap
// object reached through an unchanged pointer (automatic variables modified after setjmp are
// indeterminate after longjmp), and no C++ object with a destructor is created on the C frames.
// Warnings are recorded, not printed; "premature end of file" makes the decode fail.
namespace {
struct JpegErr {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char msg[JMSG_LENGTH_MAX] = {0};
  bool truncated = false;
};

void jpeg_on_error(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegErr*>(c->err);
  (*c->err->format_message)(c, e->msg);
  std::longjmp(e->jump, 1);
}

void jpeg_on_message(j_common_ptr c, int level) {
  if (level >= 0) return;  // trace messages
  auto* e = reinterpret_cast<JpegErr*>(c->err);
  c->err->num_warnings++;
  if (c->err->msg_code == JWRN_JPEG_EOF) e->truncated = true;
}

struct JpegDecodeState {
  jpeg_decompress_struct cinfo;
  JpegErr err;
  bool created = false;
  Image img;
  ~JpegDecodeState() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

struct JpegEncodeState {
  jpeg_compress_struct cinfo;
  JpegErr err;
  bool created = false;
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  ~JpegEncodeState() {
    if (created) jpeg_destroy_compress(&cinfo);
    std::free(buf);
  }
};

// scale_num / 8: libjpeg's DCT scaling (8 = full size).
Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name, int channels, int scale_num = 8) {
  auto st = std::make_unique<JpegDecodeState>();
  st->cinfo.err = jpeg_std_error(&st->err.pub);
  st->err.pub.error_exit = jpeg_on_error;
  st->err.pub.emit_message = jpeg_on_message;
  if (setjmp(st->err.jump)) {
    RG_THROW("cannot decode '", name, "': ", st->err.msg);
  }
  jpeg_create_decompress(&st->cinfo);
  st->created = true;
  jpeg_mem_src(&st->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&st->cinfo, TRUE);
  const bool gray = channels == 1 || (channels == 0 && st->cinfo.num_components == 1);
  st->cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  st->cinfo.scale_num = static_cast<unsigned>(scale_num);
  st->cinfo.scale_denom = 8;
  jpeg_start_decompress(&st->cinfo);
  st->img = Image(st->cinfo.output_height, st->cinfo.output_width, st->cinfo.output_components);
  while (st->cinfo.output_scanline < st->cinfo.output_height) {
    JSAMPROW row = st->img.pixels.data() +
                   static_cast<size_t>(st->cinfo.output_scanline) * st->img.width * st->img.channels;
    jpeg_read_scanlines(&st->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&st->cinfo);
  jpeg_destroy_decompress(&st->cinfo);
  st->created = false;
  RG_CHECK(!st->err.truncated, "cannot decode '", name, "': JPEG file is truncated (premature end of data)");
  return std::move(st->img);
}

// The JPEG header of `data` (size and components) or an error message; no pixel is decoded.
bool jpeg_header(const uint8_t* data, size_t size, ImageHeader* h) {
  auto st = std::make_unique<JpegDecodeState>();
  st->cinfo.err = jpeg_std_error(&st->err.pub);
  st->err.pub.error_exit = jpeg_on_error;
  st->err.pub.emit_message = jpeg_on_message;
  if (setjmp(st->err.jump)) {
    h->error = st->err.msg;
    return false;
  }
  jpeg_create_decompress(&st->cinfo);
  st->created = true;
  jpeg_mem_src(&st->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&st->cinfo, TRUE);
  h->height = st->cinfo.image_height;
  h->width = st->cinfo.image_width;
  h->channels = st->cinfo.num_components;
  return true;
}
}  // namespace

std::string encode_jpeg(const Image& img, int quality, const std::string& name) {
  RG_CHECK(img.channels == 1 || img.channels == 3, "cannot encode '", name, "' as JPEG: ", img.channels,
           " channels (1 or 3 supported)");
  RG_CHECK(img.height > 0 && img.width > 0, "cannot encode '", name, "' as JPEG: empty image");
  RG_CHECK(quality >= 1 && quality <= 100, "cannot encode '", name, "' as JPEG: quality ", quality,
           " not in 1..100");
  auto st = std::make_unique<JpegEncodeState>();
  st->cinfo.err = jpeg_std_error(&st->err.pub);
  st->err.pub.error_exit = jpeg_on_error;
  st->err.pub.emit_message = jpeg_on_message;
  if (setjmp(st->err.jump)) {
    RG_THROW("cannot encode '", name, "' as JPEG: ", st->err.msg);
  }
  jpeg_create_compress(&st->cinfo);
  st->created = true;
  jpeg_mem_dest(&st->cinfo, &st->buf, &st->size);
  st->cinfo.image_width = static_cast<JDIMENSION>(img.width);
  st->cinfo.image_height = static_cast<JDIMENSION>(img.height);
  st->cinfo.input_components = static_cast<int>(img.channels);
  st->cinfo.in_color_space = img.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&st->cinfo);
  jpeg_set_quality(&st->cinfo, quality, TRUE);
  jpeg_start_compress(&st->cinfo, TRUE);
  while (st->cinfo.next_scanline < st->cinfo.image_height) {
    // libjpeg takes non-const rows but only reads them.
    JSAMPROW row = const_cast<uint8_t*>(img.pixels.data()) +
                   static_cast<size_t>(st->cinfo.next_scanline) * img.width * img.channels;
    jpeg_write_scanlines(&st->cinfo, &row, 1);
  }
  jpeg_finish_compress(&st->cinfo);
  jpeg_destroy_compress(&st->cinfo);
  st->created = false;
  return std::string(reinterpret_cast<const char*>(st->buf), st->size);
}

std::string encode_png(const Image& img, const std::string& name) { return detail::encode_png_stb(img, name); }

// ---- by content
Image decode_image(const uint8_t* data, size_t size, const std::string& name, int channels) {
  RG_CHECK(channels == 0 || channels == 1 || channels == 3, "decode_image('", name, "'): channels must be 0, 1 or 3, got ",
           channels);
  RG_CHECK(size > 0, "cannot decode '", name, "': empty file");
  switch (sniff_format(data, size)) {
    case ImageFormat::Jpeg:
      return decode_jpeg(data, size, name, channels);
    case ImageFormat::Png:
      return detail::decode_png_stb(data, size, name, channels);
    default:
      RG_THROW("cannot decode '", name, "': not a JPEG or PNG file");
  }
}

namespace {
std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  RG_CHECK(f, "cannot read '", path, "': ", std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  RG_CHECK(!f.bad(), "cannot read '", path, "': I/O error");
  return bytes;
}
}  // namespace

Image read_image(const std::string& path, int channels) {
  const std::string bytes = read_file(path);
  return decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path, channels);
}

Image read_image_reduced(const std::string& path, double min_scale, double* scale) {
  const std::string bytes = read_file(path);
  const auto* d = reinterpret_cast<const uint8_t*>(bytes.data());
  int m = 8;  // 1/2, 1/4 and 1/8 have libjpeg-turbo's SIMD paths; the other M/8 are slower than 8/8
  if (sniff_format(d, bytes.size()) == ImageFormat::Jpeg) {
    while (m > 1 && (m / 2) / 8.0 >= min_scale) m /= 2;
  }
  if (scale) *scale = m / 8.0;
  if (m == 8) return decode_image(d, bytes.size(), path, 3);
  return decode_jpeg(d, bytes.size(), path, 3, m);
}

ImageHeader probe_image(const std::string& path) {
  ImageHeader h;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    h.error = std::strerror(errno);
    return h;
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(f, std::fclose);
  std::string head(64 * 1024, '\0');
  head.resize(std::fread(head.data(), 1, head.size(), f));
  const bool whole = head.size() < 64 * 1024;
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  uint8_t tail[12] = {0};
  const long ntail = std::min<long>(size, 12);
  std::fseek(f, size - ntail, SEEK_SET);
  if (std::fread(tail, 1, static_cast<size_t>(ntail), f) != static_cast<size_t>(ntail)) {
    h.error = "I/O error";
    return h;
  }
  const auto* d = reinterpret_cast<const uint8_t*>(head.data());
  if (size == 0) {
    h.error = "empty file";
    return h;
  }
  h.format = sniff_format(d, head.size());
  if (h.format == ImageFormat::Jpeg) {
    if (!jpeg_header(d, head.size(), &h) && !whole) {  // the header may lie beyond 64 KiB (large EXIF/ICC)
      h.error.clear();
      const std::string all = read_file(path);
      jpeg_header(reinterpret_cast<const uint8_t*>(all.data()), all.size(), &h);
    }
    if (!h.error.empty()) return h;
    h.complete = ntail >= 2 && tail[ntail - 2] == 0xFF && tail[ntail - 1] == 0xD9;
  } else if (h.format == ImageFormat::Png) {
    static const uint8_t kIhdr[4] = {'I', 'H', 'D', 'R'};
    if (head.size() < 26 || std::memcmp(d + 12, kIhdr, 4) != 0) {
      h.error = "PNG without an IHDR chunk";
      return h;
    }
    auto be32 = [&](size_t o) { return (int64_t{d[o]} << 24) | (int64_t{d[o + 1]} << 16) | (int64_t{d[o + 2]} << 8) | d[o + 3]; };
    h.width = be32(16);
    h.height = be32(20);
    static const int kChannels[7] = {1, 0, 3, 1, 2, 0, 4};  // by colour type 0..6 (3: palette)
    h.channels = d[25] <= 6 ? kChannels[d[25]] : 0;
    static const uint8_t kIend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
    h.complete = ntail == 12 && std::memcmp(tail, kIend, 12) == 0;
  } else {
    h.error = "not a JPEG or PNG file";
    return h;
  }
  if (!h.complete) {  // no end marker: only a full decode can tell (trailing bytes after EOI are harmless)
    try {
      read_image(path, 3);
      h.complete = true;
    } catch (const std::exception& e) {
      h.error = e.what();
    }
  }
  return h;
}

void write_image(const std::string& path, const Image& img, int quality) {
  std::string bytes;
  switch (format_from_extension(path)) {
    case ImageFormat::Jpeg:
      bytes = encode_jpeg(img, quality, path);
      break;
    case ImageFormat::Png:
      bytes = encode_png(img, path);
      break;
    default:
      RG_THROW("cannot write '", path, "': unknown image extension (use .jpg, .jpeg or .png)");
  }
  std::FILE* f = std::fopen(path.c_str(), "wb");
  RG_CHECK(f, "cannot write '", path, "': ", std::strerror(errno));
  const size_t n = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool ok = n == bytes.size() && std::fflush(f) == 0;
  const int err = errno;
  std::fclose(f);
  RG_CHECK(ok, "cannot write '", path, "': ", std::strerror(err));
}

// ---- geometry
Image hflip(const Image& img) {
  Image out(img.height, img.width, img.channels);
  const int64_t c = img.channels;
  for (int64_t y = 0; y < img.height; ++y) {
    for (int64_t x = 0; x < img.width; ++x) {
      std::memcpy(out.at(y, img.width - 1 - x), img.at(y, x), static_cast<size_t>(c));
    }
  }
  return out;
}

Image crop(const Image& img, int64_t top, int64_t left, int64_t h, int64_t w, uint8_t fill) {
  RG_CHECK(h >= 0 && w >= 0, "crop: negative size ", h, "x", w);
  Image out(h, w, img.channels, fill);
  const int64_t c = img.channels;
  for (int64_t y = 0; y < h; ++y) {
    const int64_t sy = top + y;
    if (sy < 0 || sy >= img.height) continue;
    const int64_t x0 = std::max<int64_t>(0, -left), x1 = std::min<int64_t>(w, img.width - left);
    if (x1 <= x0) continue;
    std::memcpy(out.at(y, x0), img.at(sy, left + x0), static_cast<size_t>((x1 - x0) * c));
  }
  return out;
}

Image resize_bilinear(const Image& img, int64_t out_h, int64_t out_w) {
  RG_CHECK(out_h > 0 && out_w > 0, "resize: bad output size ", out_h, "x", out_w);
  RG_CHECK(img.height > 0 && img.width > 0, "resize: empty input image");
  Image out(out_h, out_w, img.channels);
  const double sh = static_cast<double>(img.height) / out_h, sw = static_cast<double>(img.width) / out_w;
  const int64_t c = img.channels;
  for (int64_t y = 0; y < out_h; ++y) {
    const double fy = std::clamp((y + 0.5) * sh - 0.5, 0.0, static_cast<double>(img.height - 1));
    const auto y0 = static_cast<int64_t>(fy);
    const int64_t y1 = std::min(y0 + 1, img.height - 1);
    const double ay = fy - static_cast<double>(y0);
    for (int64_t x = 0; x < out_w; ++x) {
      const double fx = std::clamp((x + 0.5) * sw - 0.5, 0.0, static_cast<double>(img.width - 1));
      const auto x0 = static_cast<int64_t>(fx);
      const int64_t x1 = std::min(x0 + 1, img.width - 1);
      const double ax = fx - static_cast<double>(x0);
      for (int64_t k = 0; k < c; ++k) {
        const double top = img.at(y0, x0)[k] * (1 - ax) + img.at(y0, x1)[k] * ax;
        const double bot = img.at(y1, x0)[k] * (1 - ax) + img.at(y1, x1)[k] * ax;
        out.at(y, x)[k] = static_cast<uint8_t>(std::clamp(top * (1 - ay) + bot * ay + 0.5, 0.0, 255.0));
      }
    }
  }
  return out;
}

}  // namespace rg::data
