// Fuzzes deserialize_records (metrics/records.cpp, Note [Record bytes]): a blob either reads into
// records that serialise back to the same bytes (flags normalised to 0/1), or throws rg::Error.
#include <cstring>

#include "fuzz/fuzz_util.h"
#include "metrics/records.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<rg::metrics::ImageRecord> recs;
  if (!rg::fuzz::returns_or_rg_error([&] { recs = rg::metrics::deserialize_records(data, size); },
                                     "deserialize_records")) {
    return 0;
  }
  const std::vector<uint8_t> again = rg::metrics::serialize_records(recs);
  RG_FUZZ_CHECK(again.size() == size, "re-serialised to ", again.size(), " bytes from ", size);
  // Byte for byte, except the crowd and difficult flags, which read as bool: compare the parse of both.
  const auto recs2 = rg::metrics::deserialize_records(again.data(), again.size());
  RG_FUZZ_CHECK(recs2.size() == recs.size(), "record count");
  size_t gts = 0, dets = 0;
  for (size_t i = 0; i < recs.size(); ++i) {
    const auto &a = recs[i], &b = recs2[i];
    RG_FUZZ_CHECK(a.image_id == b.image_id && a.gts.size() == b.gts.size() && a.dets.size() == b.dets.size(), "record ", i);
    for (size_t k = 0; k < a.gts.size(); ++k) {
      RG_FUZZ_CHECK(std::memcmp(&a.gts[k].x, &b.gts[k].x, 4 * sizeof(double)) == 0 &&
                        std::memcmp(&a.gts[k].area, &b.gts[k].area, sizeof(double)) == 0 &&
                        a.gts[k].category == b.gts[k].category && a.gts[k].crowd == b.gts[k].crowd &&
                        a.gts[k].difficult == b.gts[k].difficult,
                    "ground truth ", k, " of record ", i);
    }
    for (size_t k = 0; k < a.dets.size(); ++k) {
      RG_FUZZ_CHECK(std::memcmp(&a.dets[k].x, &b.dets[k].x, 5 * sizeof(double)) == 0 && a.dets[k].category == b.dets[k].category,
                    "detection ", k, " of record ", i);
    }
    gts += a.gts.size();
    dets += a.dets.size();
  }
  RG_FUZZ_CHECK(size == 16 + 24 * recs.size() + 50 * gts + 48 * dets, "the blob's size is not what its records take");
  // Outside the flag bytes, the bytes are the input's.
  size_t at = 16;
  for (const auto& r : recs) {
    RG_FUZZ_CHECK(std::memcmp(data + at, again.data() + at, 24) == 0, "record header bytes at ", at);
    at += 24;
    for (size_t k = 0; k < r.gts.size(); ++k, at += 50) {
      RG_FUZZ_CHECK(std::memcmp(data + at, again.data() + at, 48) == 0, "ground-truth bytes at ", at);
    }
    RG_FUZZ_CHECK(std::memcmp(data + at, again.data() + at, 48 * r.dets.size()) == 0, "detection bytes at ", at);
    at += 48 * r.dets.size();
  }
  RG_FUZZ_CHECK(std::memcmp(data, again.data(), 16) == 0, "header bytes");
  return 0;
}
