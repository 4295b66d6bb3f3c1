// `ringgrad detect --weights W --source IMAGE|DIR [...]`: runs a detector on image files and writes
// them with their boxes, class names and scores drawn (data/draw.h), optional YOLO txt files, and
// per-image counts and timings. An image that cannot be read is skipped with a message.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "apps/arg_utils.h"
#include "apps/commands.h"
#include "apps/tasks/detect_eval.h"
#include "autograd/grad_mode.h"
#include "core/error.h"
#include "data/box_transforms.h"
#include "data/draw.h"
#include "data/image.h"
#include "data/synthetic.h"
#include "data/yolo_format.h"
#include "models/yolo_decode.h"
#include "nn/checkpoint.h"

namespace fs = std::filesystem;

namespace rg::app {

namespace {

void detect_usage() {
  std::printf(
      "usage: ringgrad detect --weights W --source IMAGE|DIR [--cfg CFG] [--data YAML | --names FILE]\n"
      "                       [--conf 0.25] [--iou 0.45] [--max-det 300] [--img N] [--agnostic-nms]\n"
      "                       [--out runs/detect/predict] [--save-txt [--save-conf]] [--device cpu|cuda:0]\n\n"
      "Runs a detector on an image or on every image of a folder (sorted by name) and writes OUT/<name> with\n"
      "the boxes drawn (class name and score, a colour per class), and with --save-txt OUT/labels/<stem>.txt in\n"
      "YOLO format: one `class cx cy w h` line per box, normalised to the image (--save-conf appends the score).\n"
      "Each image is scaled so that its long side is --img (default: the training size, else 416) and padded to a\n"
      "multiple of the stride. W: a ringgrad checkpoint (best.safetensors; cfg, class names and size come with\n"
      "it), or a darknet .weights / plain safetensors with --cfg; class names from --data's data.yaml or\n"
      "--names (one per line), COCO's for 80 classes, else class0, class1, ...\n"
      "A file that cannot be read as an image is skipped with a message.\n");
}

const char* const kImageExtensions[] = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"};

bool has_image_extension(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  for (const char* x : kImageExtensions) {
    if (e == x) return true;
  }
  return false;
}

std::vector<std::string> list_sources(const std::string& source) {
  RG_CHECK(fs::exists(source), "detect: --source '", source, "' does not exist");
  if (!fs::is_directory(source)) return {source};
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(source)) {
    if (e.is_regular_file() && has_image_extension(e.path())) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  RG_CHECK(!out.empty(), "detect: no image files (", ".jpg, .png, ...) in '", source, "'");
  return out;
}

std::vector<std::string> read_names(const std::string& path) {
  std::ifstream f(path);
  RG_CHECK(f.good(), "detect: cannot read --names '", path, "'");
  std::vector<std::string> names;
  for (std::string line; std::getline(f, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

// (1, 3, H, W) f32 in [0, 1] of an RGB image.
Tensor image_tensor(const data::Image& img) {
  const int64_t H = img.height, W = img.width;
  std::vector<float> chw(static_cast<size_t>(3 * H * W));
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      const uint8_t* p = img.at(y, x);
      for (int64_t c = 0; c < 3; ++c) chw[static_cast<size_t>((c * H + y) * W + x)] = static_cast<float>(p[c]) / 255.0f;
    }
  }
  return from_vector<float>(chw, {1, 3, H, W});
}

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

struct DetectConfigCli {
  std::string weights, cfg, source, out = "runs/detect/predict", data, names_file, device = "cpu";
  double conf = 0.25, iou = 0.45;
  int64_t img = 0, max_det = 300;
  bool save_txt = false, save_conf = false, agnostic = false;
};

DetectConfigCli parse_detect(const Args& args) {
  check_known_flags(args,
                    {"--weights", "--cfg", "--source", "--out", "--data", "--names", "--device", "--conf", "--iou",
                     "--img", "--max-det"},
                    {"--save-txt", "--save-conf", "--agnostic-nms"}, "detect");
  DetectConfigCli c;
  c.weights = last_opt(args, "--weights", "");
  c.cfg = last_opt(args, "--cfg", "");
  c.source = last_opt(args, "--source", "");
  c.out = last_opt(args, "--out", c.out);
  c.data = last_opt(args, "--data", "");
  c.names_file = last_opt(args, "--names", "");
  c.device = last_opt(args, "--device", c.device);
  c.conf = parse_double(args, "--conf", c.conf);
  c.iou = parse_double(args, "--iou", c.iou);
  c.img = parse_int(args, "--img", 0);
  c.max_det = parse_int(args, "--max-det", c.max_det);
  c.save_txt = has_flag(args, "--save-txt");
  c.save_conf = has_flag(args, "--save-conf");
  c.agnostic = has_flag(args, "--agnostic-nms");
  RG_CHECK(!c.source.empty(), "detect: --source IMAGE|DIR is required");
  RG_CHECK(c.conf >= 0 && c.conf <= 1 && c.iou >= 0 && c.iou <= 1, "detect: --conf and --iou must be in [0, 1]");
  RG_CHECK(c.max_det >= 1, "detect: --max-det must be >= 1");
  RG_CHECK(c.data.empty() || c.names_file.empty(), "detect: give --data or --names, not both");
  return c;
}

// "2 circles, 1 square" (ultralytics' wording, plural by adding "s").
std::string count_text(const std::vector<float>& rows, const std::vector<std::string>& names) {
  std::map<int64_t, int> counts;
  for (size_t r = 0; r + 6 <= rows.size(); r += 6) ++counts[static_cast<int64_t>(rows[r + 5])];
  if (counts.empty()) return "no detections";
  std::string s;
  for (const auto& [k, n] : counts) {
    s += (s.empty() ? "" : ", ") + std::to_string(n) + " " + names[static_cast<size_t>(k)] + (n > 1 ? "s" : "");
  }
  return s;
}

std::string yolo_lines(const std::vector<float>& rows, int64_t h0, int64_t w0, bool conf) {
  std::string s;
  char line[160];
  for (size_t r = 0; r + 6 <= rows.size(); r += 6) {
    const double x1 = rows[r], y1 = rows[r + 1], x2 = rows[r + 2], y2 = rows[r + 3];
    int n = std::snprintf(line, sizeof(line), "%d %.6f %.6f %.6f %.6f", static_cast<int>(rows[r + 5]),
                          (x1 + x2) / 2 / static_cast<double>(w0), (y1 + y2) / 2 / static_cast<double>(h0),
                          (x2 - x1) / static_cast<double>(w0), (y2 - y1) / static_cast<double>(h0));
    if (conf) std::snprintf(line + n, sizeof(line) - static_cast<size_t>(n), " %.6f", rows[r + 4]);
    s += std::string(line) + "\n";
  }
  return s;
}

void write_picture(const std::string& path, const data::Image& img) {
  std::string e = fs::path(path).extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  data::write_file_via_rename(path, e == ".png" ? data::encode_png(img, path) : data::encode_jpeg(img, 90, path));
}

}  // namespace

int cmd_detect(const Args& args) {
  if (args.empty() || has_flag(args, "-h") || has_flag(args, "--help")) {
    detect_usage();
    return args.empty() ? 2 : 0;
  }
  const DetectConfigCli c = parse_detect(args);
  LoadedDetector det = load_detector(c.weights, c.cfg, true);
  const int64_t nc = det.model->heads()[0].num_classes, stride = det.model->max_stride();
  std::vector<std::string> names = det.names;
  if (!c.data.empty()) {
    const std::string yaml = fs::is_directory(c.data) ? (fs::path(c.data) / "data.yaml").string() : c.data;
    names = data::read_data_yaml(yaml).names;
  }
  if (!c.names_file.empty()) names = read_names(c.names_file);
  RG_CHECK(names.empty() || static_cast<int64_t>(names.size()) == nc, "detect: ", names.size(),
           " class names for a model of ", nc, " classes");
  names = names_or_default(names, nc);
  const int64_t img = c.img > 0 ? c.img : (det.img > 0 ? det.img : 416);
  RG_CHECK(img % stride == 0, "detect: --img ", img, " is not a multiple of the model's stride ", stride);
  const Device device = Device::parse(c.device);
  det.model->to(device);
  det.model->eval();
  const std::vector<std::string> files = list_sources(c.source);
  fs::create_directories(c.out);
  if (c.save_txt) fs::create_directories(fs::path(c.out) / "labels");
  std::printf("detect: %s, %lld classes, long side %lld px, conf %g, iou %g, device %s\n", det.what.c_str(),
              static_cast<long long>(nc), static_cast<long long>(img), c.conf, c.iou, device.str().c_str());
  models::NmsOptions no;
  no.conf_thres = c.conf;
  no.iou_thres = c.iou;
  no.max_det = c.max_det;
  no.agnostic = c.agnostic;
  NoGradGuard ng;
  int64_t done = 0, skipped = 0, boxes = 0;
  double t_pre = 0, t_inf = 0, t_nms = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& f = files[i];
    auto t0 = std::chrono::steady_clock::now();
    data::Image im;
    try {
      im = data::read_image(f, 3);
    } catch (const std::exception& e) {
      std::printf("image %zu/%zu %s: skipped, cannot read it: %s\n", i + 1, files.size(), f.c_str(), e.what());
      ++skipped;
      continue;
    }
    // The long side to img, the other padded up to a multiple of the stride (ultralytics' auto letterbox).
    const double r = static_cast<double>(img) / static_cast<double>(std::max(im.height, im.width));
    auto padded = [&](int64_t side) {
      const int64_t s = std::max<int64_t>(1, std::llround(static_cast<double>(side) * r));
      return (s + stride - 1) / stride * stride;
    };
    const data::Letterboxed lb = data::letterbox(im, im.height, im.width, padded(im.height), padded(im.width));
    const Tensor x = image_tensor(lb.image).to(device);
    const double pre = ms_since(t0);
    t0 = std::chrono::steady_clock::now();
    const Tensor raw = det.model->forward(x);  // (1, rows, 5 + C)
    const Tensor decoded = models::yolo_decode(raw, det.model->heads(), lb.image.height, lb.image.width);
    (void)decoded.to(kCPU);  // the forward is done (a device sync) before the NMS clock starts
    const double inf = ms_since(t0);
    t0 = std::chrono::steady_clock::now();
    std::vector<float> rows = models::non_max_suppression(decoded, no)[0].to_vector<float>();
    data::ImageInfo info;
    info.h0 = im.height;
    info.w0 = im.width;
    info.letterbox = lb.params;
    info.mappable = true;
    data::unletterbox_xyxy(rows.data(), static_cast<int64_t>(rows.size() / 6), 6, info);
    const double nms = ms_since(t0);
    const int64_t lw = std::max<int64_t>(2, std::llround(static_cast<double>(im.height + im.width) / 2 * 0.003));
    for (size_t k = 0; k + 6 <= rows.size(); k += 6) {
      const int64_t cls = static_cast<int64_t>(rows[k + 5]);
      char label[128];
      std::snprintf(label, sizeof(label), "%s %.2f", names[static_cast<size_t>(cls)].c_str(), rows[k + 4]);
      const data::Box b{rows[k], rows[k + 1], rows[k + 2], rows[k + 3], static_cast<int32_t>(cls)};
      data::draw_labelled_box(&im, b, label, data::class_colour(cls), lw, std::max<int64_t>(12, lw * 6));
    }
    const fs::path name = fs::path(f).filename();
    write_picture((fs::path(c.out) / name).string(), im);
    if (c.save_txt) {
      nn::atomic_write_file((fs::path(c.out) / "labels" / (name.stem().string() + ".txt")).string(),
                            yolo_lines(rows, im.height, im.width, c.save_conf));
    }
    std::printf("image %zu/%zu %s: %lldx%lld %s, %.1fms (pre %.1f, inference %.1f, nms %.1f)\n", i + 1, files.size(),
                f.c_str(), static_cast<long long>(lb.image.width), static_cast<long long>(lb.image.height),
                count_text(rows, names).c_str(), pre + inf + nms, pre, inf, nms);
    std::fflush(stdout);
    ++done;
    boxes += static_cast<int64_t>(rows.size() / 6);
    t_pre += pre, t_inf += inf, t_nms += nms;
  }
  RG_CHECK(done > 0, "detect: none of the ", files.size(), " file(s) could be read as an image");
  const double n = static_cast<double>(done);
  std::printf("Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image\n", t_pre / n, t_inf / n, t_nms / n);
  std::printf("detect: %lld image(s), %lld box(es)%s; results in %s%s\n", static_cast<long long>(done),
              static_cast<long long>(boxes), skipped ? (", " + std::to_string(skipped) + " skipped").c_str() : "",
              c.out.c_str(), c.save_txt ? (" (labels in " + (fs::path(c.out) / "labels").string() + ")").c_str() : "");
  return 0;
}

}  // namespace rg::app
