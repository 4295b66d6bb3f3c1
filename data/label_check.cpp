// Label checks (Note [Bad labels]), the report, the binary label cache (Note [Label cache]), the
// parallel check driver and the DetectionDataset the formats hand back.
#include "data/label_check.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "data/synthetic.h"  // write_file_via_rename

namespace rg::data {

// ---- names, report
const char* label_issue_name(LabelIssue k) {
  switch (k) {
    case LabelIssue::ClassOutOfRange: return "class out of range";
    case LabelIssue::Outside: return "outside image";
    case LabelIssue::EmptyBox: return "empty box";
    case LabelIssue::Malformed: return "malformed";
    case LabelIssue::Duplicate: return "duplicate";
    case LabelIssue::BadImage: return "bad image";
  }
  return "?";
}

std::string LabelProblem::where() const { return line > 0 ? file + ":" + std::to_string(line) : file; }

int64_t LabelReport::total_dropped() const {
  int64_t n = 0;
  for (int64_t d : dropped) n += d;
  return n;
}

void LabelReport::add(LabelProblem p) {
  ++dropped[static_cast<size_t>(p.kind)];
  problems.push_back(std::move(p));
}

std::string LabelReport::summary() const {
  std::ostringstream s;
  s << source << ": " << images << " images, " << boxes << " boxes, " << backgrounds << " backgrounds";
  if (clipped) s << ", " << clipped << " boxes clipped to the image";
  if (skipped) s << ", " << skipped << " crowd/difficult boxes left out";
  const int64_t bad = total_dropped();
  if (bad == 0) {
    s << "; no bad labels";
  } else {
    s << "; " << bad << " bad labels dropped (";
    bool first = true;
    for (int k = 0; k < kNumLabelIssues; ++k) {
      if (!dropped[static_cast<size_t>(k)]) continue;
      s << (first ? "" : ", ") << dropped[static_cast<size_t>(k)] << " " << label_issue_name(static_cast<LabelIssue>(k));
      first = false;
    }
    s << ") in ";
    const size_t shown = std::min<size_t>(problems.size(), 3);
    for (size_t i = 0; i < shown; ++i) s << (i ? ", " : "") << problems[i].where();
    if (problems.size() > shown) s << " ...";
  }
  s << (from_cache ? " (label cache" : " (checked");
  if (from_cache && rechecked) s << ", " << rechecked << " files checked again";
  s << ")";
  for (const auto& n : notes) s << "; " << n;
  return s.str();
}

// ---- checks
BoxVerdict check_box(Box* b, double img_w, double img_h, double tol) {
  const double w = static_cast<double>(b->x2) - b->x1, h = static_cast<double>(b->y2) - b->y1;
  if (!(w > 0) || !(h > 0) || !std::isfinite(w) || !std::isfinite(h)) return BoxVerdict::Empty;
  const double over_x = std::max(-static_cast<double>(b->x1), static_cast<double>(b->x2) - img_w) / img_w;
  const double over_y = std::max(-static_cast<double>(b->y1), static_cast<double>(b->y2) - img_h) / img_h;
  const double over = std::max(over_x, over_y);
  if (over <= 0) return BoxVerdict::Ok;
  if (std::max(over_x * img_w, over_y * img_h) <= 1e-3) {  // printing and parsing noise: not a clip to count
    *b = clip_box(*b, img_w, img_h);
    return BoxVerdict::Ok;
  }
  if (over > tol) return BoxVerdict::Outside;
  *b = clip_box(*b, img_w, img_h);
  if (!(b->x2 > b->x1) || !(b->y2 > b->y1)) return BoxVerdict::Outside;
  return BoxVerdict::Clipped;
}

FileStamp file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {static_cast<int64_t>(st.st_size), static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

bool check_image_file(CheckedImage* c) {
  const ImageHeader h = probe_image(c->image);
  std::string why;
  if (!h.error.empty()) {
    why = (h.error == std::strerror(ENOENT) ? "missing image: " : "unreadable image: ") + h.error;
  } else if (h.height < 10 || h.width < 10) {
    why = "image size " + std::to_string(h.width) + "x" + std::to_string(h.height) + " is under 10 pixels";
  }
  if (!why.empty()) {
    c->ok = false;
    c->problems.push_back({LabelIssue::BadImage, c->image, 0, why});
    return false;
  }
  c->ok = true;
  c->height = h.height;
  c->width = h.width;
  return true;
}

void add_checked_box(CheckedImage* c, Box b, double tol, const std::string& file, int64_t line,
                     const std::string& what) {
  const Box raw = b;
  const BoxVerdict v = check_box(&b, static_cast<double>(c->width), static_cast<double>(c->height), tol);
  auto coords = [&] {
    std::ostringstream s;
    s << "[" << raw.x1 << ", " << raw.y1 << ", " << raw.x2 << ", " << raw.y2 << "] in a " << c->width << "x"
      << c->height << " image";
    return s.str();
  };
  if (v == BoxVerdict::Empty) {
    c->problems.push_back({LabelIssue::EmptyBox, file, line, what + "box of zero or negative size " + coords()});
    return;
  }
  if (v == BoxVerdict::Outside) {
    c->problems.push_back({LabelIssue::Outside, file, line, what + "box outside the image " + coords()});
    return;
  }
  for (const Box& o : c->boxes) {
    if (o == b) {
      c->problems.push_back({LabelIssue::Duplicate, file, line, what + "duplicate of an earlier box " + coords()});
      return;
    }
  }
  if (v == BoxVerdict::Clipped) ++c->clipped;
  c->boxes.push_back(b);
}

// ---- the label cache (Note [Label cache])
namespace {
constexpr char kMagic[8] = {'R', 'G', 'L', 'A', 'B', 'E', 'L', 'S'};
constexpr uint32_t kCacheVersion = 1;

struct Writer {
  std::string out;
  template <typename T>
  void pod(const T& v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void str(const std::string& s) {
    pod(static_cast<uint32_t>(s.size()));
    out += s;
  }
  void stamp(const FileStamp& s) {
    pod(s.size);
    pod(s.mtime_ns);
  }
};

struct Reader {
  const std::string& in;
  size_t pos = 0;
  bool ok = true;
  template <typename T>
  T pod() {
    T v{};
    if (pos + sizeof(T) > in.size()) {
      ok = false;
      return v;
    }
    std::memcpy(&v, in.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str() {
    const auto n = pod<uint32_t>();
    if (!ok || pos + n > in.size()) {
      ok = false;
      return {};
    }
    std::string s = in.substr(pos, n);
    pos += n;
    return s;
  }
  FileStamp stamp() {
    FileStamp s;
    s.size = pod<int64_t>();
    s.mtime_ns = pod<int64_t>();
    return s;
  }
};

uint64_t fnv1a(const char* p, size_t n, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint8_t>(p[i])) * 1099511628211ull;
  return h;
}
}  // namespace

uint64_t hash_settings(const std::vector<std::string>& parts) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& p : parts) {
    h = fnv1a(p.data(), p.size(), h);
    h = fnv1a("\x1f", 1, h);
  }
  return h;
}

std::string write_label_cache(const std::string& path, const LabelCacheKey& key, const LabelCache& cache) {
  Writer w;
  w.out.append(kMagic, sizeof(kMagic));
  w.pod(kCacheVersion);
  w.str(key.format);
  w.pod(key.settings);
  w.stamp(key.source);
  w.pod(static_cast<uint64_t>(cache.extra.size()));
  for (const auto& e : cache.extra) w.str(e);
  w.pod(static_cast<uint64_t>(cache.entries.size()));
  for (const CheckedImage& c : cache.entries) {
    w.str(c.image);
    w.str(c.label);
    w.stamp(c.image_stamp);
    w.stamp(c.label_stamp);
    w.pod(static_cast<uint8_t>(c.ok));
    w.pod(c.height);
    w.pod(c.width);
    w.pod(c.clipped);
    w.pod(c.skipped);
    w.pod(static_cast<uint32_t>(c.boxes.size()));
    for (const Box& b : c.boxes) {
      w.pod(b.x1), w.pod(b.y1), w.pod(b.x2), w.pod(b.y2), w.pod(b.cls);
    }
    w.pod(static_cast<uint32_t>(c.problems.size()));
    for (const LabelProblem& p : c.problems) {
      w.pod(static_cast<uint8_t>(p.kind));
      w.str(p.file);
      w.pod(p.line);
      w.str(p.message);
    }
  }
  w.pod(fnv1a(w.out.data(), w.out.size()));
  try {
    write_file_via_rename(path, w.out);
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

namespace {
bool parse_cache(const std::string& in, const LabelCacheKey& key, LabelCache* cache) {
  if (in.size() < sizeof(kMagic) + 8 || std::memcmp(in.data(), kMagic, sizeof(kMagic)) != 0) return false;
  uint64_t sum = 0;
  std::memcpy(&sum, in.data() + in.size() - 8, 8);
  if (sum != fnv1a(in.data(), in.size() - 8)) return false;
  Reader r{in, sizeof(kMagic)};
  if (r.pod<uint32_t>() != kCacheVersion || r.str() != key.format || r.pod<uint64_t>() != key.settings ||
      !(r.stamp() == key.source)) {
    return false;
  }
  const auto ne = r.pod<uint64_t>();
  if (!r.ok || ne > in.size()) return false;
  cache->extra.resize(static_cast<size_t>(ne));
  for (auto& e : cache->extra) e = r.str();
  const auto n = r.pod<uint64_t>();
  if (!r.ok || n > in.size()) return false;
  std::vector<CheckedImage> out(static_cast<size_t>(n));
  for (CheckedImage& c : out) {
    c.image = r.str();
    c.label = r.str();
    c.image_stamp = r.stamp();
    c.label_stamp = r.stamp();
    c.ok = r.pod<uint8_t>() != 0;
    c.height = r.pod<int64_t>();
    c.width = r.pod<int64_t>();
    c.clipped = r.pod<int64_t>();
    c.skipped = r.pod<int64_t>();
    const auto nb = r.pod<uint32_t>();
    if (!r.ok || nb > in.size()) return false;
    c.boxes.resize(nb);
    for (Box& b : c.boxes) {
      b.x1 = r.pod<float>(), b.y1 = r.pod<float>(), b.x2 = r.pod<float>(), b.y2 = r.pod<float>();
      b.cls = r.pod<int32_t>();
    }
    const auto np = r.pod<uint32_t>();
    if (!r.ok || np > in.size()) return false;
    c.problems.resize(np);
    for (LabelProblem& p : c.problems) {
      const auto k = r.pod<uint8_t>();
      if (k >= kNumLabelIssues) return false;
      p.kind = static_cast<LabelIssue>(k);
      p.file = r.str();
      p.line = r.pod<int64_t>();
      p.message = r.str();
    }
    if (!r.ok) return false;
  }
  if (r.pos + 8 != in.size()) return false;
  cache->entries = std::move(out);
  return true;
}
}  // namespace

LabelCache read_label_cache(const std::string& path, const LabelCacheKey& key) {
  LabelCache cache;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return cache;
  std::string in;
  try {
    std::ifstream f(path, std::ios::binary);
    in.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  } catch (const std::exception&) {
    return cache;
  }
  if (!parse_cache(in, key, &cache)) return {};
  cache.valid = true;
  return cache;
}

// ---- the check driver
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& fn) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(n, 1)));
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex mu;
  auto run = [&] {
    for (int64_t i = next++; i < n; i = next++) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(run);
  run();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

std::vector<CheckedImage> check_with_cache(const std::string& cache_path, const LabelCacheKey& key,
                                           const std::vector<std::pair<std::string, std::string>>& files,
                                           const std::function<CheckedImage(int64_t)>& check,
                                           const LabelCheckOptions& opts, LabelReport* report,
                                           const LabelCache* preread, std::vector<std::string> extra) {
  const auto n = static_cast<int64_t>(files.size());
  LabelCache read;
  if (!preread && opts.use_cache) read = read_label_cache(cache_path, key);
  const LabelCache& lc = preread ? *preread : read;
  const bool have_cache = opts.use_cache && lc.valid;
  const std::vector<CheckedImage>& cached = lc.entries;
  std::unordered_map<std::string, size_t> by_image;
  for (size_t i = 0; i < cached.size(); ++i) by_image.emplace(cached[i].image, i);

  std::vector<CheckedImage> out(static_cast<size_t>(n));
  std::vector<char> fresh(static_cast<size_t>(n), 0);
  parallel_for(n, opts.threads, [&](int64_t i) {
    const auto& [image, label] = files[static_cast<size_t>(i)];
    const FileStamp is = file_stamp(image), ls = label.empty() ? FileStamp{} : file_stamp(label);
    auto it = by_image.find(image);
    if (it != by_image.end()) {
      const CheckedImage& c = cached[it->second];
      if (c.label == label && c.image_stamp == is && c.label_stamp == ls) {
        out[static_cast<size_t>(i)] = c;
        return;
      }
    }
    CheckedImage c = check(i);
    c.image = image;
    c.label = label;
    c.image_stamp = is;
    c.label_stamp = ls;
    out[static_cast<size_t>(i)] = std::move(c);
    fresh[static_cast<size_t>(i)] = 1;
  });
  const int64_t rechecked = std::count(fresh.begin(), fresh.end(), 1);
  report->from_cache = have_cache;
  report->rechecked = rechecked;
  const bool changed = rechecked > 0 || !have_cache || cached.size() != out.size();
  if (opts.use_cache && changed) {
    LabelCache next;
    next.extra = std::move(extra);
    next.entries = out;
    const std::string err = write_label_cache(cache_path, key, next);
    if (!err.empty()) report->notes.push_back("label cache not written: " + err);
  }
  return out;
}

DetectionDataset assemble_dataset(std::vector<std::string> names, std::vector<CheckedImage> checked,
                                  LabelReport report, const LabelCheckOptions& opts, std::vector<int64_t> category_ids) {
  std::vector<DetectionRecord> records;
  records.reserve(checked.size());
  for (CheckedImage& c : checked) {
    for (LabelProblem& p : c.problems) report.add(std::move(p));
    if (!c.ok) continue;
    report.clipped += c.clipped;
    report.skipped += c.skipped;
    report.boxes += static_cast<int64_t>(c.boxes.size());
    if (c.boxes.empty()) ++report.backgrounds;
    records.push_back({std::move(c.image), c.height, c.width, std::move(c.boxes)});
  }
  report.images = static_cast<int64_t>(records.size());
  if (opts.strict && !report.problems.empty()) {
    const LabelProblem& p = report.problems.front();
    RG_THROW(p.where(), ": ", p.message, " (", label_issue_name(p.kind), "; ", report.problems.size(),
             " bad label(s) in ", report.source, "; --strict makes them errors)");
  }
  return DetectionDataset(std::move(names), std::move(records), std::move(report), std::move(category_ids));
}

// ---- DetectionDataset
DetectionDataset::DetectionDataset(std::vector<std::string> names, std::vector<DetectionRecord> records,
                                   LabelReport report, std::vector<int64_t> category_ids)
    : names_(std::move(names)), records_(std::move(records)), report_(std::move(report)),
      category_ids_(std::move(category_ids)) {
  RG_CHECK(category_ids_.empty() || category_ids_.size() == names_.size(), "DetectionDataset: ",
           category_ids_.size(), " category ids for ", names_.size(), " classes");
}

const DetectionRecord& DetectionDataset::record(int64_t i) const {
  RG_CHECK(i >= 0 && i < size(), "DetectionDataset: index ", i, " out of range [0, ", size(), ")");
  return records_[static_cast<size_t>(i)];
}

Image DetectionDataset::load(int64_t i, double min_scale, double* scale) const {
  const DetectionRecord& r = record(i);
  Image img = read_image_reduced(r.image, min_scale, scale);
  const double s = scale ? *scale : 1.0;
  const auto eh = static_cast<int64_t>(std::ceil(r.height * s - 1e-9)), ew = static_cast<int64_t>(std::ceil(r.width * s - 1e-9));
  RG_CHECK(img.height == eh && img.width == ew, "'", r.image, "' is ", img.width, "x", img.height,
           " but was ", r.width, "x", r.height, " when its labels were checked (", s,
           " decode scale); delete the label cache or restart to check it again");
  return img;
}

}  // namespace rg::data
