// PNG decoding and encoding through stb_image / stb_image_write, compiled here with static linkage
// (STB_IMAGE_STATIC) so that no other library defining the stb symbols can clash with ours.
#include <cstdint>
#include <cstring>
#include <string>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#include "data/image.h"
#include "core/error.h"

namespace rg::data::detail {

namespace {
// stb_image allocates an IDAT chunk's stated length before reading it, so a 158-byte file stating
// 528 MB allocated that much (found by fuzz_png). Every chunk up to IEND must fit in the file.
void check_png_chunks(const uint8_t* data, size_t size, const std::string& name) {
  for (size_t at = 8; at + 8 <= size;) {  // past the signature: u32 length, type, data, u32 CRC
    const uint32_t len = uint32_t{data[at]} << 24 | uint32_t{data[at + 1]} << 16 | uint32_t{data[at + 2]} << 8 | data[at + 3];
    const size_t left = size - at - 8;
    RG_CHECK(len <= left, "cannot decode '", name, "': PNG chunk at byte ", at, " states ", len,
             " bytes of data, but only ", left, " follow its header (corrupt or truncated file)");
    if (std::memcmp(data + at + 4, "IEND", 4) == 0) return;
    at += 12 + static_cast<size_t>(len);
  }
}
}  // namespace

Image decode_png_stb(const uint8_t* data, size_t size, const std::string& name, int channels) {
  RG_CHECK(size <= static_cast<size_t>(INT32_MAX), "cannot decode '", name, "': file too large");
  check_png_chunks(data, size, name);
  int w = 0, h = 0, comp = 0;
  stbi_uc* px = stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &comp, channels);
  if (!px) RG_THROW("cannot decode '", name, "': ", stbi_failure_reason() ? stbi_failure_reason() : "bad PNG");
  const int c = channels ? channels : comp;
  Image img;
  img.height = h;
  img.width = w;
  img.channels = c;
  img.pixels.assign(px, px + static_cast<size_t>(w) * h * c);
  stbi_image_free(px);
  return img;
}

namespace {
void append_to_string(void* ctx, void* data, int size) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}
}  // namespace

std::string encode_png_stb(const Image& img, const std::string& name) {
  RG_CHECK(img.channels >= 1 && img.channels <= 4, "cannot encode '", name, "' as PNG: ", img.channels,
           " channels (1..4 supported)");
  RG_CHECK(img.height > 0 && img.width > 0, "cannot encode '", name, "' as PNG: empty image");
  std::string out;
  const int ok = stbi_write_png_to_func(append_to_string, &out, static_cast<int>(img.width),
                                       static_cast<int>(img.height), static_cast<int>(img.channels),
                                       img.pixels.data(), static_cast<int>(img.width * img.channels));
  RG_CHECK(ok, "cannot encode '", name, "' as PNG: stb_image_write failed");
  return out;
}

}  // namespace rg::data::detail
