// Detection records (metrics/records.h): built from tensors, and their byte form (Note [Record bytes]).
#include "metrics/records.h"

#include <cstring>

#include "core/native.h"

namespace rg::metrics {

namespace {

std::vector<double> host_values(const Tensor& t) { return t.to_vector<double>(); }

constexpr char kMagic[4] = {'R', 'G', 'D', 'R'};
constexpr uint32_t kVersion = 1;

// Appends a value's little-endian bytes (this code assumes a little-endian host, as x86 and ARM Linux are).
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  template <typename T>
  T get(const char* what) {
    RG_CHECK(at_ + sizeof(T) <= size_, "deserialize_records: the blob ends at byte ", size_, " inside ", what,
             " (needs ", sizeof(T), " bytes at offset ", at_, ")");
    T v;
    std::memcpy(&v, data_ + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  size_t left() const { return size_ - at_; }
  size_t offset() const { return at_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

}  // namespace

ImageRecord make_record(int64_t image_id, const Tensor& detections, const Tensor& ground_truth, const Tensor& crowd,
                        const Tensor& difficult) {
  RG_CHECK(detections.defined() && detections.dim() == 2 && detections.size(1) == 6, "make_record: detections must be ",
           "(n, 6) [x1, y1, x2, y2, score, class], got ",
           detections.defined() ? shape_str(detections.sizes()) : "undefined");
  RG_CHECK(ground_truth.defined() && ground_truth.dim() == 2 && ground_truth.size(1) == 5, "make_record: ground truth ",
           "must be (m, 5) [class, x1, y1, x2, y2], got ",
           ground_truth.defined() ? shape_str(ground_truth.sizes()) : "undefined");
  const int64_t m = ground_truth.size(0);
  for (const Tensor* f : {&crowd, &difficult}) {
    RG_CHECK(!f->defined() || (f->dim() == 1 && f->size(0) == m), "make_record: crowd and difficult flags must be (", m,
             "), got ", f->defined() ? shape_str(f->sizes()) : "");
  }
  ImageRecord r;
  r.image_id = image_id;
  const std::vector<double> d = host_values(detections), g = host_values(ground_truth);
  const std::vector<double> c = crowd.defined() ? host_values(crowd) : std::vector<double>(m, 0.0);
  const std::vector<double> k = difficult.defined() ? host_values(difficult) : std::vector<double>(m, 0.0);
  for (size_t i = 0; i + 6 <= d.size(); i += 6) {
    r.dets.push_back({d[i], d[i + 1], d[i + 2] - d[i], d[i + 3] - d[i + 1], d[i + 4], static_cast<int64_t>(d[i + 5])});
  }
  for (int64_t i = 0; i < m; ++i) {
    const double* b = &g[static_cast<size_t>(5 * i)];
    GtBox box{b[1], b[2], b[3] - b[1], b[4] - b[2], static_cast<int64_t>(b[0]), c[i] != 0, k[i] != 0, -1};
    r.gts.push_back(box);
  }
  return r;
}

std::vector<uint8_t> serialize_records(const std::vector<ImageRecord>& records) {
  std::vector<uint8_t> out(kMagic, kMagic + 4);
  put<uint32_t>(out, kVersion);
  put<uint64_t>(out, records.size());
  for (const ImageRecord& r : records) {
    put<int64_t>(out, r.image_id);
    put<uint64_t>(out, r.gts.size());
    put<uint64_t>(out, r.dets.size());
    for (const GtBox& g : r.gts) {
      for (double v : {g.x, g.y, g.w, g.h, g.area}) put<double>(out, v);
      put<int64_t>(out, g.category);
      put<uint8_t>(out, g.crowd);
      put<uint8_t>(out, g.difficult);
    }
    for (const DetBox& d : r.dets) {
      for (double v : {d.x, d.y, d.w, d.h, d.score}) put<double>(out, v);
      put<int64_t>(out, d.category);
    }
  }
  return out;
}

std::vector<ImageRecord> deserialize_records(const uint8_t* data, size_t size) {
  RG_CHECK(size >= 4 && std::memcmp(data, kMagic, 4) == 0, "deserialize_records: not a record blob (", size,
           " bytes, no RGDR magic)");
  Reader in(data + 4, size - 4);
  const auto version = in.get<uint32_t>("the version");
  RG_CHECK(version == kVersion, "deserialize_records: version ", version, ", this build reads version ", kVersion);
  const auto n = in.get<uint64_t>("the record count");
  constexpr size_t kMinRecord = 24, kGt = 50, kDet = 48;
  RG_CHECK(n <= in.left() / kMinRecord, "deserialize_records: ", n, " records cannot fit in ", in.left(), " bytes");
  std::vector<ImageRecord> out(static_cast<size_t>(n));
  for (ImageRecord& r : out) {
    r.image_id = in.get<int64_t>("an image id");
    const auto ng = in.get<uint64_t>("a box count"), nd = in.get<uint64_t>("a box count");
    RG_CHECK(ng <= in.left() / kGt && nd <= in.left() / kDet, "deserialize_records: image ", r.image_id, " claims ", ng,
             " ground-truth boxes and ", nd, " detections but ", in.left(), " bytes are left");
    r.gts.resize(static_cast<size_t>(ng));
    for (GtBox& g : r.gts) {
      g.x = in.get<double>("a box");
      g.y = in.get<double>("a box");
      g.w = in.get<double>("a box");
      g.h = in.get<double>("a box");
      g.area = in.get<double>("a box");
      g.category = in.get<int64_t>("a box");
      g.crowd = in.get<uint8_t>("a box") != 0;
      g.difficult = in.get<uint8_t>("a box") != 0;
    }
    r.dets.resize(static_cast<size_t>(nd));
    for (DetBox& d : r.dets) {
      d.x = in.get<double>("a detection");
      d.y = in.get<double>("a detection");
      d.w = in.get<double>("a detection");
      d.h = in.get<double>("a detection");
      d.score = in.get<double>("a detection");
      d.category = in.get<int64_t>("a detection");
    }
  }
  RG_CHECK(in.left() == 0, "deserialize_records: ", in.left(), " bytes left over after ", n, " records (at offset ",
           4 + in.offset(), ")");
  return out;
}

}  // namespace rg::metrics
