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
uint32_t be32(const uint8_t* p) { return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3]; }

// stb_image allocates what a file states before reading it (found by fuzz_png): a 158-byte file whose
// IDAT chunk stated 528 MB allocated that much, and a header stating 12 x 16515082 pixels allocated
// their 611 MB for 300 bytes of data. So every chunk up to IEND must fit in the file, and the pixels
// must fit in what the IDAT bytes can inflate to (deflate expands at most 1032:1: one 258-byte copy
// per two bits), which stb requires anyway ("not enough pixels").
void check_png_chunks(const uint8_t* data, size_t size, const std::string& name) {
  double ihdr_bytes = 0, idat = 0;  // the pixels' bytes (without filter bytes) the header states
  uint32_t w = 0, h = 0;
  for (size_t at = 8; at + 8 <= size;) {  // past the signature: u32 length, type, data, u32 CRC
    const uint32_t len = be32(data + at);
    const size_t left = size - at - 8;
    RG_CHECK(len <= left, "cannot decode '", name, "': PNG chunk at byte ", at, " states ", len,
             " bytes of data, but only ", left, " follow its header (corrupt or truncated file)");
    const uint8_t* type = data + at + 4;
    if (std::memcmp(type, "IHDR", 4) == 0 && len == 13) {
      const uint8_t depth = data[at + 16], color = data[at + 17];
      const int channels = color == 2 ? 3 : color == 4 ? 2 : color == 6 ? 4 : 1;
      w = be32(data + at + 8);
      h = be32(data + at + 12);
      ihdr_bytes = static_cast<double>(w) * h * channels * depth / 8;
    }
    if (std::memcmp(type, "IDAT", 4) == 0) idat += len;
    if (std::memcmp(type, "IEND", 4) == 0) break;
    at += 12 + static_cast<size_t>(len);
  }
  RG_CHECK(ihdr_bytes <= 1032 * idat + 1032, "cannot decode '", name, "': the PNG header states ",
           w, "x", h, " pixels (", static_cast<uint64_t>(std::min(ihdr_bytes, 1e19)), " bytes), more than its ",
           static_cast<uint64_t>(idat), " bytes of image data can hold (corrupt or truncated file)");
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
