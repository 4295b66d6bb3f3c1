// Fuzzes the label cache reader (data/label_check.cpp, Note [Label cache]). The input is a cache file
// without its trailing checksum, which the target appends (FNV-1a 64 of the bytes before it), so that
// mutations reach the fields instead of failing the sum. A cache that reads as valid writes back to
// the same bytes (but for the `ok` flags, which read as bool), and reads back to the same entries;
// anything else reads as "no cache" (never an exception).
#include <cstring>

#include "data/label_check.h"
#include "fuzz/fuzz_util.h"

namespace {
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

bool same(const rg::data::CheckedImage& a, const rg::data::CheckedImage& b) {
  if (a.image != b.image || a.label != b.label || !(a.image_stamp == b.image_stamp) || !(a.label_stamp == b.label_stamp) ||
      a.ok != b.ok || a.height != b.height || a.width != b.width || a.clipped != b.clipped || a.skipped != b.skipped ||
      a.boxes.size() != b.boxes.size() || a.problems.size() != b.problems.size()) {
    return false;
  }
  for (size_t i = 0; i < a.boxes.size(); ++i) {  // bit for bit: NaN coordinates compare equal
    if (std::memcmp(&a.boxes[i], &b.boxes[i], sizeof(rg::data::Box)) != 0) return false;
  }
  for (size_t i = 0; i < a.problems.size(); ++i) {
    const auto &p = a.problems[i], &q = b.problems[i];
    if (p.kind != q.kind || p.file != q.file || p.line != q.line || p.message != q.message) return false;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  const uint64_t sum = fnv1a(bytes);
  bytes.append(reinterpret_cast<const char*>(&sum), 8);
  const std::string path = rg::fuzz::write_scratch("labels.cache", bytes);
  const rg::data::LabelCacheKey key{"yolo", 0x5eed, {}};
  rg::data::LabelCache cache;
  RG_FUZZ_CHECK(rg::fuzz::returns_or_rg_error([&] { cache = rg::data::read_label_cache(path, key); }),
                "reading a corrupt cache threw");
  if (!cache.valid) {
    RG_FUZZ_CHECK(cache.entries.empty() && cache.extra.empty(), "an invalid cache with entries");
    return 0;
  }
  const std::string out = rg::fuzz::scratch_dir() + "/again.cache";
  const std::string err = rg::data::write_label_cache(out, key, cache);
  RG_FUZZ_CHECK(err.empty(), "writing the cache back: ", err);
  RG_FUZZ_CHECK(rg::fuzz::read_scratch(out).size() == bytes.size(), "the cache writes back to another size");
  const rg::data::LabelCache again = rg::data::read_label_cache(out, key);
  RG_FUZZ_CHECK(again.valid && again.extra == cache.extra && again.entries.size() == cache.entries.size(),
                "the written cache reads back differently");
  for (size_t i = 0; i < again.entries.size(); ++i) {
    RG_FUZZ_CHECK(same(again.entries[i], cache.entries[i]), "entry ", i, " reads back differently");
  }
  return 0;
}
