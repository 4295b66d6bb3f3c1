// Fuzzes JPEG decoding through our wrappers (data/image.cpp): decode_image with 0, 1 and 3 channels,
// probe_image, read_image_reduced and re-encoding, as fuzz/image_checks.h describes.
#include "fuzz/image_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rg::fuzz::check_image_decode(data, size, rg::data::ImageFormat::Jpeg);
  return 0;
}
