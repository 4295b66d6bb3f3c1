// The evaluation training and `ringgrad val` share (Note [Detection evaluation]), the validation
// loader, the per-class table and COCO-json predictions (apps/tasks/detect_eval.h).
#include "apps/tasks/detect_eval.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "data/box_transforms.h"
#include "data/coco_format.h"
#include "data/dataloader.h"
#include "data/detection_loader.h"
#include "data/draw.h"
#include "data/synthetic.h"
#include "data/transforms.h"
#include "metrics/records.h"
#include "models/yolo_decode.h"
#include "train/data_util.h"

namespace fs = std::filesystem;

namespace rg::app {

namespace {
using DetectLoader = train::LoaderOf<data::DataLoader, data::Batch>;


// The drawable predictions of one image (batch pixels) with a score of at least 0.25.
std::vector<data::DrawBox> drawable(const std::vector<float>& rows) {
  std::vector<data::DrawBox> out;
  for (size_t r = 0; r + 6 <= rows.size(); r += 6) {
    if (rows[r + 4] < 0.25f) continue;
    data::DrawBox d;
    d.box = {rows[r], rows[r + 1], rows[r + 2], rows[r + 3], static_cast<int32_t>(rows[r + 5])};
    d.score = rows[r + 4];
    out.push_back(d);
  }
  return out;
}

void write_prediction_plot(const std::string& path, const data::Batch& host, const std::vector<std::vector<float>>& rows,
                           const std::vector<std::string>& names) {
  std::vector<std::vector<data::DrawBox>> boxes;
  std::vector<std::string> titles;
  for (size_t i = 0; i < rows.size(); ++i) {
    boxes.push_back(drawable(rows[i]));
    titles.push_back(fs::path(host.info[i].path).filename().string());
  }
  const data::Image pic = data::plot_images(host.images, boxes, names, titles);
  data::write_file_via_rename(path, data::encode_jpeg(pic, 90, path));
}

// Every rank's records, gathered (Note [Exact distributed evaluation]).
std::vector<metrics::ImageRecord> gather_records(const std::vector<metrics::ImageRecord>& mine,
                                                 const train::DistContext& dist) {
  if (!dist.enabled || dist.world == 1) return mine;
  const std::vector<uint8_t> bytes = metrics::serialize_records(mine);
  const std::vector<std::string> all = dist.allgather_bytes(std::string(bytes.begin(), bytes.end()));
  std::vector<metrics::ImageRecord> out;
  for (const std::string& blob : all) {
    std::vector<metrics::ImageRecord> r =
        metrics::deserialize_records(reinterpret_cast<const uint8_t*>(blob.data()), blob.size());
    for (auto& x : r) out.push_back(std::move(x));
  }
  return out;
}
}  // namespace

std::unique_ptr<train::Loader> make_detect_val_loader(std::shared_ptr<const data::DetectionDataset> ds, int64_t img,
                                                      int64_t stride, bool rect, int64_t batch, int workers,
                                                      const train::DistContext& dist, bool pin_memory) {
  const int64_t world = dist.enabled ? dist.world : 1, rank = dist.enabled ? dist.rank : 0;
  std::shared_ptr<const data::Sampler> sampler;
  if (rect) {
    sampler = std::make_shared<data::AspectRatioSampler>(*ds, world, rank);
  } else if (world > 1) {
    data::DistributedSampler::Options so;
    so.shuffle = false;
    so.pad = false;  // every image exactly once
    sampler = std::make_shared<data::DistributedSamplerAdapter>(data::DistributedSampler(ds->size(), world, rank, so));
  } else {
    sampler = std::make_shared<data::SequentialSampler>(ds->size());
  }
  data::DetectionPipeline p;
  p.img_size = img;
  p.stride = stride;
  p.augment = false;
  p.rect = rect;
  data::DataLoaderOptions lo;
  lo.batch_size = batch;
  lo.workers = workers;
  lo.pin_memory = pin_memory;
  auto samples = [](const data::Batch& b) { return b.images.size(0); };
  return std::make_unique<DetectLoader>(
      std::make_unique<data::DataLoader>(sampler, data::detection_batch_fn(std::move(ds), p), lo), samples);
}

DetectEval evaluate_detector(nn::Module& model, const std::vector<models::YoloHeadSpec>& heads, train::Loader& val,
                             const data::DetectionDataset& ds, const train::DistContext& dist, Device device,
                             const DetectEvalSettings& s, const std::string& pred_plot) {
  const auto t0 = std::chrono::steady_clock::now();
  static const data::U8Normalizer to_unit({0.0, 0.0, 0.0}, {1.0, 1.0, 1.0});  // x / 255
  models::NmsOptions no;
  no.conf_thres = s.conf;
  no.iou_thres = s.iou;
  no.max_det = s.max_det;
  std::vector<metrics::ImageRecord> mine;
  bool plot_pending = !pred_plot.empty();
  val.start_epoch(0, 0);
  while (const std::unique_ptr<train::Batch> hb = val.next()) {
    const data::Batch& host = train::batch_value<data::Batch>(*hb);
    const data::Batch b = data::to_device(host, device);
    const int64_t H = b.images.size(2), W = b.images.size(3);
    const Tensor raw = model.forward(to_unit(b.images));  // (B, rows, 5 + C)
    const std::vector<Tensor> dets = models::non_max_suppression(models::yolo_decode(raw, heads, H, W), no);
    std::vector<std::vector<float>> batch_rows;
    for (size_t i = 0; i < dets.size(); ++i) {
      const data::ImageInfo& info = host.info[i];
      RG_CHECK(info.mappable, "evaluation batch image ", info.path, " is not a plain letterbox of its file");
      std::vector<float> rows = dets[i].to_vector<float>();  // (n, 6) x1 y1 x2 y2 score class, batch pixels
      if (plot_pending) batch_rows.push_back(rows);
      const int64_t n = static_cast<int64_t>(rows.size() / 6);
      data::unletterbox_xyxy(rows.data(), n, 6, info);
      metrics::ImageRecord rec;
      rec.image_id = info.index;
      for (int64_t k = 0; k < n; ++k) {
        const float* r = rows.data() + 6 * k;
        rec.dets.push_back({r[0], r[1], static_cast<double>(r[2]) - r[0], static_cast<double>(r[3]) - r[1], r[4],
                            static_cast<int64_t>(r[5])});
      }
      for (const data::Box& g : ds.record(info.index).boxes) {
        metrics::GtBox gt;
        gt.x = g.x1;
        gt.y = g.y1;
        gt.w = static_cast<double>(g.x2) - g.x1;
        gt.h = static_cast<double>(g.y2) - g.y1;
        gt.category = g.cls;
        rec.gts.push_back(gt);
      }
      mine.push_back(std::move(rec));
    }
    if (plot_pending) {
      write_prediction_plot(pred_plot, host, batch_rows, names_or_default(ds.names(), ds.num_classes()));
      plot_pending = false;
    }
  }
  DetectEval out;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.records = gather_records(mine, dist);
  std::sort(out.records.begin(), out.records.end(),
            [](const metrics::ImageRecord& a, const metrics::ImageRecord& b) { return a.image_id < b.image_id; });
  out.images = static_cast<int64_t>(out.records.size());
  RG_CHECK(out.images == ds.size(), "evaluation covered ", out.images, " of the ", ds.size(), " validation images");
  metrics::EvalOptions eo;
  eo.num_classes = std::max<int64_t>(ds.num_classes(), heads.empty() ? 0 : heads[0].num_classes);
  out.metrics = metrics::evaluate_detections(out.records, eo);
  return out;
}

std::vector<train::Figure> detect_figure_names() {
  return {{"P", 0, 4}, {"R", 0, 4}, {"mAP50", 0, 4}, {"mAP50-95", 0, 4}};
}

train::Figures detect_figures(const metrics::DetectionMetrics& m) {
  train::Figures f = detect_figure_names();
  f[0].value = m.precision;
  f[1].value = m.recall;
  f[2].value = std::max(m.map50, 0.0);
  f[3].value = std::max(m.map, 0.0);
  return f;
}

std::string per_class_table(const DetectEval& e, const std::vector<std::string>& names_in) {
  const metrics::DetectionMetrics& m = e.metrics;
  const int64_t K = static_cast<int64_t>(m.ap_per_class.size());
  const std::vector<std::string> names = names_or_default(names_in, K);
  std::vector<int64_t> images(static_cast<size_t>(K), 0), instances(static_cast<size_t>(K), 0);
  for (const auto& r : e.records) {
    std::set<int64_t> seen;
    for (const auto& g : r.gts) {
      if (g.category < 0 || g.category >= K) continue;
      ++instances[static_cast<size_t>(g.category)];
      seen.insert(g.category);
    }
    for (int64_t k : seen) ++images[static_cast<size_t>(k)];
  }
  std::string out;
  char line[256];
  std::snprintf(line, sizeof(line), "%22s %10s %10s %10s %10s %10s %10s\n", "Class", "Images", "Instances", "P", "R",
                "mAP50", "mAP50-95");
  out += line;
  std::snprintf(line, sizeof(line), "%22s %10lld %10lld %10.4f %10.4f %10.4f %10.4f\n", "all",
                static_cast<long long>(e.images), static_cast<long long>(m.ground_truth), m.precision, m.recall,
                std::max(m.map50, 0.0), std::max(m.map, 0.0));
  out += line;
  for (int64_t k = 0; k < K; ++k) {
    if (m.ap_per_class[static_cast<size_t>(k)] < 0) continue;  // no ground truth of this class
    std::snprintf(line, sizeof(line), "%22s %10lld %10lld %10s %10s %10.4f %10.4f\n",
                  names[static_cast<size_t>(k)].substr(0, 22).c_str(), static_cast<long long>(images[static_cast<size_t>(k)]),
                  static_cast<long long>(instances[static_cast<size_t>(k)]), "-", "-",
                  m.ap50_per_class[static_cast<size_t>(k)], m.ap_per_class[static_cast<size_t>(k)]);
    out += line;
  }
  return out;
}

namespace {
// The image id ultralytics gives a file without a COCO json: its stem when numeric.
bool numeric_stem(const std::string& path, int64_t* id) {
  const std::string stem = fs::path(path).stem().string();
  if (stem.empty() || stem.size() > 18 || !std::all_of(stem.begin(), stem.end(), ::isdigit)) return false;
  *id = std::stoll(stem);
  return true;
}
}  // namespace

CocoIds coco_ids_for(const data::DetectionDataset& ds, const std::string& data_root, const std::string& split) {
  CocoIds ids;
  const int64_t n = ds.size(), K = ds.num_classes();
  ids.image_ids.resize(static_cast<size_t>(n));
  ids.category_ids.resize(static_cast<size_t>(K));
  if (!ds.category_ids().empty()) {  // a COCO dataset: its own ids
    ids.category_ids = ds.category_ids();
  } else {
    for (int64_t k = 0; k < K; ++k) ids.category_ids[static_cast<size_t>(k)] = k;
  }
  const fs::path json = fs::path(data_root) / "annotations" / ("instances_" + split + ".json");
  std::map<std::string, int64_t> by_name;
  if (!data_root.empty() && fs::exists(json)) {
    const data::CocoFile f = data::read_coco_json(json.string());
    for (const auto& im : f.images) by_name[fs::path(im.file_name).filename().string()] = im.id;
    std::vector<int64_t> cats;
    for (const auto& c : f.categories) cats.push_back(c.id);
    std::sort(cats.begin(), cats.end());
    if (static_cast<int64_t>(cats.size()) == K) ids.category_ids = cats;
    ids.source = json.string();
  }
  int64_t from_json = 0;
  for (int64_t i = 0; i < n; ++i) {
    const std::string& path = ds.record(i).image;
    auto it = by_name.find(fs::path(path).filename().string());
    int64_t id = i;
    if (it != by_name.end()) {
      id = it->second;
      ++from_json;
    } else {
      numeric_stem(path, &id);
    }
    ids.image_ids[static_cast<size_t>(i)] = id;
  }
  if (ids.source.empty() || from_json < n) {
    const std::string rest = "image ids from numeric file stems (else the dataset index), category ids = class index";
    ids.source = ids.source.empty() ? rest : ids.source + " (" + std::to_string(n - from_json) + " images not in it: " + rest + ")";
  }
  return ids;
}

std::string coco_predictions_json(const std::vector<metrics::ImageRecord>& records, const CocoIds& ids) {
  std::string out = "[";
  char buf[256];
  bool first = true;
  for (const auto& r : records) {
    const int64_t image_id = ids.image_ids.at(static_cast<size_t>(r.image_id));
    for (const auto& d : r.dets) {
      // %.17g: doubles written so that they read back exactly.
      std::snprintf(buf, sizeof(buf), "%s\n{\"image_id\": %lld, \"category_id\": %lld, \"bbox\": [%.17g, %.17g, %.17g, %.17g], \"score\": %.17g}",
                    first ? "" : ",", static_cast<long long>(image_id),
                    static_cast<long long>(ids.category_ids.at(static_cast<size_t>(d.category))), d.x, d.y, d.w, d.h,
                    d.score);
      out += buf;
      first = false;
    }
  }
  return out + "\n]\n";
}

}  // namespace rg::app
