// COCO instances json: the streaming SAX reader (Note [COCO json]) and the checked dataset.
#include "data/coco_format.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "data/label_check.h"

namespace fs = std::filesystem;

namespace rg::data {

namespace {
// A file read in 1 MiB chunks, seen by nlohmann as an input iterator of chars.
class ChunkedFile {
 public:
  explicit ChunkedFile(const std::string& path) : f_(std::fopen(path.c_str(), "rb"), std::fclose), buf_(1 << 20) {
    RG_CHECK(f_, "cannot read '", path, "': ", std::strerror(errno));
    refill();
  }
  bool done() const { return len_ == 0; }
  char current() const { return buf_[pos_]; }
  void advance() {
    if (++pos_ == len_) refill();
  }

  struct Iter {
    using iterator_category = std::input_iterator_tag;
    using value_type = char;
    using difference_type = std::ptrdiff_t;
    using pointer = const char*;
    using reference = char;
    ChunkedFile* file = nullptr;  // null: the end
    char operator*() const { return file->current(); }
    Iter& operator++() {
      file->advance();
      return *this;
    }
    bool operator==(const Iter& o) const { return (!file || file->done()) == (!o.file || o.file->done()); }
  };
  Iter begin() { return Iter{this}; }
  static Iter end() { return Iter{}; }

 private:
  void refill() {
    len_ = std::fread(buf_.data(), 1, buf_.size(), f_.get());
    pos_ = 0;
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f_;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
};

// SAX events -> CocoFile, keeping only the fields of Note [COCO json].
class CocoSax {
 public:
  explicit CocoSax(CocoFile* out) : out_(out) {}
  enum class Section { Other, Images, Annotations, Categories };

  bool null() { return scalar_value(Scalar{}); }
  bool boolean(bool b) { return scalar_value(Scalar{Scalar::Bool, b ? 1.0 : 0.0, {}}); }
  bool number_integer(int64_t v) { return scalar_value(Scalar{Scalar::Num, static_cast<double>(v), {}, v, true}); }
  bool number_unsigned(uint64_t v) {
    return scalar_value(Scalar{Scalar::Num, static_cast<double>(v), {}, static_cast<int64_t>(v), v <= INT64_MAX});
  }
  bool number_float(double v, const std::string&) { return scalar_value(Scalar{Scalar::Num, v, {}}); }
  bool string(std::string& s) { return scalar_value(Scalar{Scalar::Str, 0, std::move(s)}); }
  bool binary(std::vector<uint8_t>&) { return false; }
  bool key(std::string& k) {
    if (depth_ == 1) root_key_ = std::move(k);
    if (depth_ == 3) field_ = std::move(k);
    return true;
  }
  bool start_object(size_t) { return open(true); }
  bool start_array(size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    error_ = json_parse_error_message(position, ex.what());
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  struct Scalar {
    enum Kind { Null, Bool, Num, Str } kind = Null;
    double num = 0;
    std::string str;
    int64_t i = 0;
    bool is_int = false;
  };

  bool open(bool object) {
    ++depth_;
    if (depth_ == 1 && !object) return fail("the top level is an array, not a COCO object");
    if (depth_ == 2) section_ = object ? Section::Other : section_of(root_key_);
    if (depth_ == 3 && section_ != Section::Other) {
      if (!object) return fail(root_key_ + "[" + std::to_string(count()) + "] is an array, not an object");
      field_.clear();
      if (section_ == Section::Images) out_->images.emplace_back();
      if (section_ == Section::Annotations) out_->annotations.emplace_back();
      if (section_ == Section::Categories) out_->categories.emplace_back();
    }
    if (depth_ == 4 && section_ == Section::Annotations && field_ == "bbox") {
      if (object) {
        note("bbox is an object, not [x, y, w, h]");
      } else {
        in_bbox_ = true;
        out_->annotations.back().bbox_len = 0;
      }
    }
    return true;
  }
  bool close() {
    if (depth_ == 4) in_bbox_ = false;
    if (depth_ == 3 && section_ == Section::Annotations) finish_annotation(out_->annotations.back());
    if (depth_ == 3 && section_ == Section::Images) {
      const CocoImage& im = out_->images.back();
      if (im.id < 0 || im.file_name.empty()) return fail("images[" + std::to_string(count() - 1) + "] needs an id and a file_name");
    }
    if (depth_ == 3 && section_ == Section::Categories && out_->categories.back().id < 0) {
      return fail("categories[" + std::to_string(count() - 1) + "] needs an id");
    }
    --depth_;
    return true;
  }
  void finish_annotation(CocoAnnotation& a) {
    if (!a.problem.empty()) return;
    if (a.image_id < 0) a.problem = "no image_id";
    else if (a.category_id < 0 && a.problem.empty()) a.problem = "no category_id";
    else if (a.bbox_len != 4) a.problem = a.bbox_len < 0 ? "no bbox" : "bbox has " + std::to_string(a.bbox_len) + " numbers, not 4";
  }
  static Section section_of(const std::string& k) {
    if (k == "images") return Section::Images;
    if (k == "annotations") return Section::Annotations;
    if (k == "categories") return Section::Categories;
    return Section::Other;
  }
  size_t count() const {
    if (section_ == Section::Images) return out_->images.size();
    if (section_ == Section::Annotations) return out_->annotations.size();
    return out_->categories.size();
  }
  bool fail(const std::string& what) {
    error_ = what;
    return false;
  }
  void note(const std::string& what) {
    if (out_->annotations.back().problem.empty()) out_->annotations.back().problem = what;
  }
  // An id-like field: a non-negative integer (an integral float is accepted).
  static bool as_id(const Scalar& v, int64_t* id) {
    if (v.kind != Scalar::Num) return false;
    if (v.is_int) {
      *id = v.i;
    } else {
      if (v.num != std::floor(v.num) || std::fabs(v.num) > 9e15) return false;
      *id = static_cast<int64_t>(v.num);
    }
    return *id >= 0;
  }

  bool scalar_value(Scalar v) {
    if (depth_ == 4 && in_bbox_) {
      CocoAnnotation& a = out_->annotations.back();
      if (v.kind != Scalar::Num) {
        note("bbox holds a non-number");
      } else if (a.bbox_len < 4) {
        a.bbox[a.bbox_len] = v.num;
      }
      ++a.bbox_len;
      return true;
    }
    if (depth_ != 3 || section_ == Section::Other) return true;
    const std::string where = root_key_ + "[" + std::to_string(count() - 1) + "]";
    if (section_ == Section::Images) {
      CocoImage& im = out_->images.back();
      if (field_ == "id" && !as_id(v, &im.id)) return fail(where + ": id must be a non-negative integer");
      if (field_ == "file_name") {
        if (v.kind != Scalar::Str) return fail(where + ": file_name must be a string");
        im.file_name = std::move(v.str);
      }
      if ((field_ == "width" && !as_id(v, &im.width)) || (field_ == "height" && !as_id(v, &im.height))) {
        return fail(where + ": " + field_ + " must be a non-negative integer");
      }
    } else if (section_ == Section::Categories) {
      CocoCategory& c = out_->categories.back();
      if (field_ == "id" && !as_id(v, &c.id)) return fail(where + ": id must be a non-negative integer");
      if (field_ == "name") {
        if (v.kind != Scalar::Str) return fail(where + ": name must be a string");
        c.name = std::move(v.str);
      }
    } else {
      CocoAnnotation& a = out_->annotations.back();
      if (field_ == "id") as_id(v, &a.id);
      if (field_ == "image_id" && !as_id(v, &a.image_id)) note("image_id is not a non-negative integer");
      if (field_ == "category_id" && !as_id(v, &a.category_id)) note("category_id is not a non-negative integer");
      if (field_ == "iscrowd") a.iscrowd = v.num != 0;
      if (field_ == "bbox") note("bbox is not [x, y, w, h]");
    }
    return true;
  }

  CocoFile* out_;
  int depth_ = 0;
  Section section_ = Section::Other;
  std::string root_key_, field_;
  bool in_bbox_ = false;
  std::string error_;
};
}  // namespace

CocoFile read_coco_json(const std::string& path) {
  CocoFile out;
  ChunkedFile file(path);
  CocoSax sax(&out);
  const bool ok = nlohmann::json::sax_parse(file.begin(), ChunkedFile::end(), &sax);
  if (!ok || !sax.error().empty()) RG_THROW("'", path, "': ", sax.error().empty() ? "not a COCO json" : sax.error());
  return out;
}

// ---- the dataset
namespace {
struct CocoIndex {
  CocoFile file;
  std::unordered_map<int64_t, size_t> image_by_id;
  std::unordered_map<std::string, size_t> image_by_path;
  std::unordered_map<int64_t, int32_t> class_of_category;
  std::vector<std::vector<size_t>> annotations_of;  // by image position
  std::vector<size_t> orphans;                      // annotations naming an unknown image
};

std::unique_ptr<CocoIndex> index_coco(const std::string& json_path, const fs::path& image_dir) {
  auto ix = std::make_unique<CocoIndex>();
  ix->file = read_coco_json(json_path);
  CocoFile& f = ix->file;
  RG_CHECK(!f.categories.empty(), "'", json_path, "': no categories");
  std::sort(f.categories.begin(), f.categories.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (size_t k = 0; k < f.categories.size(); ++k) {
    RG_CHECK(k == 0 || f.categories[k].id != f.categories[k - 1].id, "'", json_path, "': category id ",
             f.categories[k].id, " appears twice");
    ix->class_of_category[f.categories[k].id] = static_cast<int32_t>(k);
  }
  for (size_t i = 0; i < f.images.size(); ++i) {
    RG_CHECK(ix->image_by_id.emplace(f.images[i].id, i).second, "'", json_path, "': image id ", f.images[i].id,
             " appears twice");
    ix->image_by_path.emplace((image_dir / f.images[i].file_name).lexically_normal().string(), i);
  }
  ix->annotations_of.resize(f.images.size());
  for (size_t a = 0; a < f.annotations.size(); ++a) {
    auto it = ix->image_by_id.find(f.annotations[a].image_id);
    if (it == ix->image_by_id.end()) {
      ix->orphans.push_back(a);
    } else {
      ix->annotations_of[it->second].push_back(a);
    }
  }
  return ix;
}

std::string annotation_name(const CocoAnnotation& a, size_t index) {
  return "annotation " + (a.id >= 0 ? "id " + std::to_string(a.id) : "#" + std::to_string(index)) + ": ";
}

CheckedImage check_coco_image(const CocoIndex& ix, size_t i, const std::string& image_path, const std::string& json_path,
                              const LabelCheckOptions& opts) {
  const CocoImage& im = ix.file.images[i];
  CheckedImage c;
  c.image = image_path;
  if (!check_image_file(&c)) return c;
  if ((im.width && im.width != c.width) || (im.height && im.height != c.height)) {
    c.ok = false;
    c.problems.push_back({LabelIssue::BadImage, image_path, 0,
                          "image is " + std::to_string(c.width) + "x" + std::to_string(c.height) + " but '" + json_path +
                              "' says " + std::to_string(im.width) + "x" + std::to_string(im.height)});
    return c;
  }
  for (size_t a : ix.annotations_of[i]) {
    const CocoAnnotation& an = ix.file.annotations[a];
    const std::string what = annotation_name(an, a);
    if (!an.problem.empty()) {
      c.problems.push_back({LabelIssue::Malformed, json_path, 0, what + an.problem});
      continue;
    }
    auto cls = ix.class_of_category.find(an.category_id);
    if (cls == ix.class_of_category.end()) {
      c.problems.push_back({LabelIssue::ClassOutOfRange, json_path, 0,
                            what + "category_id " + std::to_string(an.category_id) + " is not in categories"});
      continue;
    }
    if (an.iscrowd && !opts.keep_difficult) {
      ++c.skipped;
      continue;
    }
    const Box b{static_cast<float>(an.bbox[0]), static_cast<float>(an.bbox[1]), static_cast<float>(an.bbox[0] + an.bbox[2]),
                static_cast<float>(an.bbox[1] + an.bbox[3]), cls->second};
    add_checked_box(&c, b, opts.clip_tolerance, json_path, 0, what);
  }
  return c;
}
}  // namespace

DetectionDataset load_coco(const std::string& json_path, const std::string& image_dir, const LabelCheckOptions& opts) {
  const FileStamp js = file_stamp(json_path);
  RG_CHECK(js.size >= 0, "COCO annotations '", json_path, "' do not exist");
  const fs::path dir = fs::path(image_dir).lexically_normal();
  const std::vector<std::string> settings = {"coco v1", std::to_string(opts.clip_tolerance),
                                             opts.keep_difficult ? "crowd" : "no crowd", dir.string()};
  const LabelCacheKey key{"coco", hash_settings(settings), js};
  const std::string cache_path = json_path + ".cache";
  const LabelCache cache = opts.use_cache ? read_label_cache(cache_path, key) : LabelCache{};

  // The json is parsed only when needed: no valid cache, or a file to check again.
  std::unique_ptr<CocoIndex> ix;
  std::once_flag parsed;
  auto index = [&]() -> const CocoIndex& {
    std::call_once(parsed, [&] { ix = index_coco(json_path, dir); });
    return *ix;
  };
  std::vector<std::string> extra;  // category id, name, id, name, ...
  std::vector<std::pair<std::string, std::string>> files;
  if (cache.valid && cache.extra.size() % 2 == 0 && !cache.extra.empty()) {
    extra = cache.extra;
    for (const auto& e : cache.entries) files.emplace_back(e.image, "");
  } else {
    const CocoIndex& x = index();
    for (const auto& c : x.file.categories) {
      extra.push_back(std::to_string(c.id));
      extra.push_back(c.name);
    }
    for (const auto& im : x.file.images) files.emplace_back((dir / im.file_name).lexically_normal().string(), "");
    files.emplace_back(json_path, "");  // the json itself: annotations of unknown images
  }
  LabelReport report;
  report.source = json_path;
  auto checked = check_with_cache(
      cache_path, key, files,
      [&](int64_t i) {
        const CocoIndex& x = index();
        const std::string& path = files[static_cast<size_t>(i)].first;
        if (path == json_path) {
          CheckedImage c;
          for (size_t a : x.orphans) {
            const auto& an = x.file.annotations[a];
            c.problems.push_back({LabelIssue::Malformed, json_path, 0,
                                  annotation_name(an, a) + "image_id " + std::to_string(an.image_id) + " is not in images"});
          }
          return c;
        }
        auto it = x.image_by_path.find(path);
        RG_CHECK(it != x.image_by_path.end(), "'", json_path, "' no longer lists '", path, "'");
        return check_coco_image(x, it->second, path, json_path, opts);
      },
      opts, &report, &cache, extra);
  std::vector<std::string> names;
  std::vector<int64_t> ids;
  for (size_t k = 0; k + 1 < extra.size(); k += 2) {
    ids.push_back(std::stoll(extra[k]));
    names.push_back(extra[k + 1]);
  }
  return assemble_dataset(std::move(names), std::move(checked), std::move(report), opts, std::move(ids));
}

}  // namespace rg::data
