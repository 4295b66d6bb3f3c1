// The shared fuzz helpers of fuzz_util.h: the abort on a broken invariant and the scratch folder.
#include "fuzz/fuzz_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace fs = std::filesystem;

namespace rg::fuzz {

void fail(const std::string& what) {
  std::fprintf(stderr, "\nfuzz invariant broken: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

namespace {
struct Scratch {
  std::string dir;
  Scratch() {
    std::string base = "/tmp";
    if (const char* env = std::getenv("RG_FUZZ_TMPDIR"); env && *env) {
      base = env;
    } else if (std::error_code ec; fs::is_directory("/dev/shm", ec)) {
      base = "/dev/shm";
    }
    dir = base + "/rg-fuzz-" + std::to_string(::getpid());
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail("cannot create the scratch folder " + dir + ": " + ec.message());
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};
}  // namespace

const std::string& scratch_dir() {
  static Scratch s;
  return s.dir;
}

std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  return write_scratch(name, std::string_view(reinterpret_cast<const char*>(data), size));
}

std::string write_scratch(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail("cannot write " + path);
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  if (std::fclose(f) != 0 || !ok) fail("cannot write " + path);
  return path;
}

std::string read_scratch(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace rg::fuzz
