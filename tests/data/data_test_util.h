// Helpers for the data tests: a temporary directory removed at scope exit, small images with
// known pixels, reading/writing raw files and setting their mtimes.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "data/image.h"
#include "test_util.h"  // error_of<std::exception>: data code also throws std:: errors

namespace rg::test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/rg_data_XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& rel) const { return (path / rel).string(); }
};

// Pixel (y, x, c) = (y * 31 + x * 17 + c * 101 + seed) mod 256: every byte value appears, neighbours differ.
inline data::Image pattern_image(int64_t h, int64_t w, int64_t c, int seed = 0) {
  data::Image img(h, w, c);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      for (int64_t k = 0; k < c; ++k) img.at(y, x)[k] = static_cast<uint8_t>((y * 31 + x * 17 + k * 101 + seed) % 256);
    }
  }
  return img;
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A w x h pattern_image written as a JPEG (quality 90) at `path`.
inline void write_jpeg(const std::string& path, int64_t w, int64_t h) {
  write_bytes(path, data::encode_jpeg(pattern_image(h, w, 3), 90));
}

// Sets a file's access and modification times to `ns` nanoseconds since the epoch.
inline void set_mtime_ns(const std::string& path, int64_t ns) {
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = ns / 1000000000;
  ts[0].tv_nsec = ts[1].tv_nsec = ns % 1000000000;
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, 0) == 0);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace rg::test
