// What the JPEG and PNG fuzz targets check on one input (data/image.cpp, data/image_stb.cpp): every
// decode through our wrappers returns a well-formed image or throws rg::Error naming the file; the
// decodes with 0, 1 and 3 channels and the header probe agree on the size; encoding what was decoded
// and decoding it again gives the same size (and, for PNG, the same pixels).
#pragma once

#include <cstdint>
#include <string>

#include "data/image.h"
#include "fuzz/fuzz_util.h"

namespace rg::fuzz {

inline void check_image_decode(const uint8_t* data, size_t size, rg::data::ImageFormat want) {
  using rg::data::Image;
  if (rg::data::sniff_format(data, size) != want) return;  // the other target's format
  const std::string path = write_scratch(want == rg::data::ImageFormat::Png ? "in.png" : "in.jpg", data, size);
  Image img[3];
  bool ok[3];
  const int channels[3] = {0, 1, 3};
  for (int k = 0; k < 3; ++k) {
    ok[k] = returns_or_rg_error([&] { img[k] = rg::data::decode_image(data, size, path, channels[k]); }, path);
    if (!ok[k]) continue;
    const Image& m = img[k];
    RG_FUZZ_CHECK(m.height > 0 && m.width > 0, "decoded ", m.width, "x", m.height);
    RG_FUZZ_CHECK(channels[k] ? m.channels == channels[k] : m.channels >= 1 && m.channels <= 4, "decoded ", m.channels,
                  " channels for ", channels[k]);
    RG_FUZZ_CHECK(m.pixels.size() == static_cast<size_t>(m.height * m.width * m.channels), "pixel count");
    RG_FUZZ_CHECK(m.height == img[0].height || !ok[0], "sizes differ between channel counts");
    RG_FUZZ_CHECK(m.width == img[0].width || !ok[0], "sizes differ between channel counts");
  }
  const rg::data::ImageHeader h = rg::data::probe_image(path);
  if (ok[2]) {
    // A file that decodes probes without an error, at the decoded size, as complete.
    RG_FUZZ_CHECK(h.error.empty() && h.format == want && h.complete, "probe of a decodable file: '", h.error, "'");
    RG_FUZZ_CHECK(h.width == img[2].width && h.height == img[2].height, "probe says ", h.width, "x", h.height,
                  ", decode ", img[2].width, "x", img[2].height);
    Image again;
    if (want == rg::data::ImageFormat::Png) {
      const std::string png = rg::data::encode_png(img[2]);
      again = rg::data::decode_image(reinterpret_cast<const uint8_t*>(png.data()), png.size(), "re-encoded", 3);
      RG_FUZZ_CHECK(again == img[2], "PNG round trip changed the image");
    } else {
      const std::string jpg = rg::data::encode_jpeg(img[2], 90);
      again = rg::data::decode_image(reinterpret_cast<const uint8_t*>(jpg.data()), jpg.size(), "re-encoded", 3);
      RG_FUZZ_CHECK(again.height == img[2].height && again.width == img[2].width, "JPEG round trip changed the size");
      // Decoding reduced by the DCT: exactly ceil(size * M / 8).
      double scale = 0;
      Image small;
      if (returns_or_rg_error([&] { small = rg::data::read_image_reduced(path, 0.2, &scale); }, path)) {
        const auto m = static_cast<int64_t>(scale * 8);
        RG_FUZZ_CHECK(small.width == (img[2].width * m + 7) / 8 && small.height == (img[2].height * m + 7) / 8,
                      "reduced decode at ", m, "/8: ", small.width, "x", small.height);
      }
    }
  } else if (h.error.empty()) {
    RG_FUZZ_CHECK(h.format == want, "probe format");
  }
}

}  // namespace rg::fuzz
