// End-to-end: the detector on generated shapes, through the `ringgrad` command line. YOLOv3-tiny at
// a small size learns (mAP@0.5 from ~0 to a clear value) and writes its outputs; `ringgrad val`
// reproduces training's mAP exactly on 1 and 2 ranks; `ringgrad detect` draws pictures and writes
// YOLO txt files whose boxes land on the labelled shapes; 2 DDP ranks equal one process with the
// global batch; a resumed run ends bitwise equal to an uninterrupted one; bad inputs give clean errors.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/json.h"
#include "data/image.h"
#include "data/synthetic_detect.h"
#include "checkpoint_util.h"
#include "launch_util.h"
#include "models/darknet.h"
#include "models/darknet_cfg.h"
#include "models/darknet_weights.h"
#include "nn/checkpoint.h"
#include "test_util.h"

namespace fs = std::filesystem;
using rg::test::bitwise_differences;
using rg::test::trainer_meta;

namespace {

using rg::test::read_file;
using rg::test::ringgrad_bin;

struct TempDir : rg::test::ScratchDir {
  TempDir() : ScratchDir("rg_e2e_detect_") {}
};

// Runs `ringgrad <args>` with `env` ("OMP_NUM_THREADS=1 ...") through the shell, stdout and stderr
// into `log`; returns the exit status.
int ringgrad(const std::string& args, const fs::path& log, const std::string& env = "") {
  const std::string cmd = env + " " + ringgrad_bin() + " " + args + " > " + log.string() + " 2>&1";
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string make_shapes(const TempDir& d, const std::string& name, int64_t classes, int64_t train, int64_t val,
                        int64_t min_size, int64_t max_size, double min_object, int64_t max_objects) {
  rg::data::DetectDataOptions o;
  o.out = d / name;
  o.classes = classes;
  o.train_images = train;
  o.val_images = val;
  o.min_size = min_size;
  o.max_size = max_size;
  o.min_object = min_object;
  o.max_object = 0.6;
  o.min_objects = 1;
  o.max_objects = max_objects;
  rg::data::make_detect_dataset(o, false);
  return o.out;
}

// The metrics `ringgrad val` prints on its machine-readable line.
rg::Json val_metrics(const std::string& log) {
  const std::string key = "val: metrics ";
  const size_t at = log.find(key);
  REQUIRE_MESSAGE(at != std::string::npos, "no metrics line in:\n", log);
  const size_t end = log.find('\n', at);
  return rg::Json::parse(log.substr(at + key.size(), end - at - key.size()));
}

// YOLO txt boxes: class, cx, cy, w, h (and a score when present).
struct TxtBox {
  int cls = 0;
  double cx = 0, cy = 0, w = 0, h = 0, score = -1;
};
std::vector<TxtBox> read_txt(const fs::path& p) {
  std::ifstream f(p);
  REQUIRE_MESSAGE(f.good(), "cannot read ", p.string());
  std::vector<TxtBox> out;
  for (std::string line; std::getline(f, line);) {
    if (line.empty()) continue;
    std::istringstream ss(line);
    TxtBox b;
    REQUIRE_MESSAGE(static_cast<bool>(ss >> b.cls >> b.cx >> b.cy >> b.w >> b.h), p.string(), ": bad line '", line, "'");
    ss >> b.score;
    out.push_back(b);
  }
  return out;
}
double iou(const TxtBox& a, const TxtBox& b) {
  const double ix = std::max(0.0, std::min(a.cx + a.w / 2, b.cx + b.w / 2) - std::max(a.cx - a.w / 2, b.cx - b.w / 2));
  const double iy = std::max(0.0, std::min(a.cy + a.h / 2, b.cy + b.h / 2) - std::max(a.cy - a.h / 2, b.cy - b.h / 2));
  const double inter = ix * iy;
  return inter / (a.w * a.h + b.w * b.h - inter);
}

// Largest |a - b| over the model's floating tensors, and the largest |a - c| (how far training moved them).
double max_model_diff(const rg::nn::SafeTensors& a, const rg::nn::SafeTensors& b) {
  double m = 0;
  for (const auto& [k, ta] : a.tensors) {
    if (!rg::is_floating(ta.dtype()) || k.find('.') == std::string::npos || k.rfind("module_list.", 0) != 0) continue;
    const rg::Tensor* tb = rg::nn::find(b.tensors, k);
    REQUIRE_MESSAGE(tb != nullptr, k);
    const std::vector<double> x = ta.to_vector<double>(), y = tb->to_vector<double>();
    REQUIRE(x.size() == y.size());
    for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  }
  return m;
}

// The options every small run shares: YOLOv3-tiny, no pictures beyond what is tested, quiet logs.
std::string small_run(const std::string& data, const std::string& out) {
  return "train-detector --data " + data + " --no-make-data --cfg yolov3-tiny.cfg --out " + out +
         " --log-every 1000 --seed 3";
}

}  // namespace

// ---- learning, outputs, val and detect on one trained model

TEST_CASE("e2e: train-detector learns shapes; val reproduces its mAP on 1 and 2 ranks; detect boxes the shapes") {
  TempDir d;
  // 3 classes, 1-3 large shapes on 96-128 px images: YOLOv3-tiny at 96 px, 840 small steps with a
  // strong class gain and no mosaic, in about a minute. Measured on 2 cores: mAP@0.5 0.01 after the
  // first epoch, 0.35 after the 14th (scripts/train.sh's longer run reaches 0.79 on 6 classes).
  const std::string data = make_shapes(d, "shapes", 3, 480, 40, 96, 128, 0.3, 3);
  const std::string out = d / "run";
  const fs::path hyp = d.path / "hyp.yaml";
  std::ofstream(hyp) << "cls: 3.0\nmosaic: 0.0\nscale: 0.3\n";
  const auto t0 = std::chrono::steady_clock::now();
  const std::string args = small_run(data, out) +
                           " --img 96 --epochs 14 --batch-size 8 --accumulate 1 --optimizer adam --lr 0.003 "
                           "--warmup-epochs 1 --workers 2 --hyp " + hyp.string();
  REQUIRE(ringgrad(args, d.path / "train.log", "OMP_NUM_THREADS=2") == 0);
  const std::string log = read_file(d.path / "train.log");
  INFO("training log:\n", log);
  const double train_s = seconds_since(t0);

  // ---- it learned: mAP@0.5 from ~0 after the first epoch to a clear value at the end (results.csv)
  std::ifstream csv(fs::path(out) / "results.csv");
  std::string header;
  REQUIRE(std::getline(csv, header));
  CHECK(header ==
        "epoch,train/box,train/obj,train/cls,val/P,val/R,val/mAP50,val/mAP50-95,fitness,lr,nan_skips,corrupt,seconds");
  std::vector<double> map50;
  for (std::string line; std::getline(csv, line);) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
    REQUIRE(cells.size() == 13);
    map50.push_back(std::stod(cells[6]));
    CHECK(cells[10] == "0");  // no step skipped by the NaN guard
    CHECK(cells[11] == "0");  // no corrupt sample replaced
  }
  REQUIRE(map50.size() == 14);
  MESSAGE("YOLOv3-tiny 96 px, 480 images x 14 epochs in ", train_s, " s: mAP@0.5 ", map50.front(), " -> ", map50.back());
  CHECK(map50.front() < 0.05);
  CHECK(map50.back() >= 0.2);
  CHECK(map50.back() >= 3 * map50.front());
  CHECK(log.find("epoch 14/14") != std::string::npos);
  CHECK(log.find("mAP50-95") != std::string::npos);
  CHECK(log.find("Instances") != std::string::npos);  // the per-class table at the end
  CHECK(log.find("cfg yolov3-tiny.cfg: 80 classes rewritten to the data's 3") != std::string::npos);

  // ---- the checkpoint: darknet names, training state, class names and the cfg in the metadata
  const rg::nn::SafeTensors ck = rg::nn::load_safetensors(fs::path(out) / "last.safetensors");
  CHECK(rg::nn::find(ck.tensors, "module_list.0.Conv2d.weight") != nullptr);
  CHECK(rg::nn::find(ck.tensors, "module_list.0.BatchNorm2d.running_mean") != nullptr);
  const rg::Tensor* head = rg::nn::find(ck.tensors, "module_list.15.Conv2d.weight");
  REQUIRE(head != nullptr);
  CHECK(head->size(0) == 3 * (5 + 3));  // the head rewritten for 3 classes
  CHECK(rg::nn::find(ck.tensors, "optimizer.state.0.exp_avg") != nullptr);
  const rg::Json meta = trainer_meta(ck);
  CHECK(meta["names"].size() == 3);
  CHECK(meta["names"][0].as_string() == "circle");
  CHECK(meta["img"].as_int() == 96);
  CHECK(meta["anchors"].size() == 6);
  CHECK(meta["epoch"].as_int() == 14);
  CHECK(fs::exists(fs::path(out) / "best.safetensors"));

  // last.weights is the checkpoint's model in darknet format: it loads into the network the metadata
  // describes (the loader checks the byte count) and gives the same tensors.
  rg::models::Darknet from_weights(rg::models::parse_darknet_cfg(meta["cfg_text"].as_string(), "meta"));
  rg::models::load_darknet_weights(from_weights, (fs::path(out) / "last.weights").string());
  int64_t compared = 0;
  for (const auto& [k, t] : from_weights.state_dict()) {
    if (k.find("num_batches_tracked") != std::string::npos) continue;
    const rg::Tensor* c = rg::nn::find(ck.tensors, k);
    REQUIRE_MESSAGE(c != nullptr, k);
    CHECK_MESSAGE(std::memcmp(c->contiguous().data_ptr(), t.contiguous().data_ptr(), t.nbytes()) == 0, k);
    ++compared;
  }
  CHECK(compared > 30);
  for (const char* pic : {"train_batch0.jpg", "val_batch0_pred.jpg"}) {
    CAPTURE(pic);
    const rg::data::Image im = rg::data::read_image((fs::path(out) / pic).string());
    CHECK(im.width >= 96);
  }

  // ---- val: exactly training's last validation, on 1 rank and on 2 (one thread per process)
  const rg::Json trained = meta["model_val"];
  const std::string w = (fs::path(out) / "last.safetensors").string();
  for (const char* device : {"cpu", "cpu,cpu"}) {
    CAPTURE(device);
    const fs::path vlog = d.path / (std::string("val_") + device + ".log");
    REQUIRE(ringgrad("val --weights " + w + " --device " + device + " --out " + (d / "val"), vlog, "OMP_NUM_THREADS=1") == 0);
    const std::string vl = read_file(vlog);
    INFO("val log:\n", vl);
    const rg::Json m = val_metrics(vl);
    for (const char* k : {"P", "R", "mAP50", "mAP50-95"}) {
      CAPTURE(k);
      CHECK(m[k].as_double() == trained[k].as_double());  // bit for bit
    }
    CHECK(vl.find("Instances") != std::string::npos);
  }
  // The COCO json: one entry per detection, category ids mapped to the json's (class + 1), image ids by name.
  const rg::Json preds = rg::Json::parse(read_file(d.path / "val" / "predictions.json"));
  REQUIRE(preds.size() > 0);
  for (size_t i = 0; i < std::min<size_t>(preds.size(), 50); ++i) {
    CHECK(preds[i]["category_id"].as_int() >= 1);
    CHECK(preds[i]["category_id"].as_int() <= 3);
    CHECK(preds[i]["image_id"].as_int() >= 1);
    CHECK(preds[i]["image_id"].as_int() <= 40);
  }

  // ---- detect: pictures and txt files on 8 val images; the boxes land on the labelled shapes
  const fs::path src = d.path / "source";
  fs::create_directories(src);
  for (int i = 0; i < 8; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "%06d.jpg", i);
    fs::copy_file(fs::path(data) / "images" / "val" / name, src / name);
  }
  const std::string det_out = d / "detect";
  REQUIRE(ringgrad("detect --weights " + w + " --source " + src.string() + " --out " + det_out + " --save-txt --save-conf --conf 0.1",
                   d.path / "detect.log") == 0);
  const std::string dl = read_file(d.path / "detect.log");
  INFO("detect log:\n", dl);
  int64_t gt_total = 0, found = 0, predicted = 0;
  for (int i = 0; i < 8; ++i) {
    char stem[32];
    std::snprintf(stem, sizeof(stem), "%06d", i);
    const rg::data::Image in = rg::data::read_image((src / (std::string(stem) + ".jpg")).string());
    const rg::data::Image drawn = rg::data::read_image((fs::path(det_out) / (std::string(stem) + ".jpg")).string());
    CHECK(drawn.width == in.width);
    CHECK(drawn.height == in.height);
    const std::vector<TxtBox> gt = read_txt(fs::path(data) / "labels" / "val" / (std::string(stem) + ".txt"));
    const std::vector<TxtBox> pred = read_txt(fs::path(det_out) / "labels" / (std::string(stem) + ".txt"));
    for (const TxtBox& p : pred) {
      CHECK(p.score >= 0.1);
      CHECK(p.cls >= 0);
      CHECK(p.cls < 3);
      CHECK(p.cx >= 0);
      CHECK(p.cx <= 1);
      CHECK(p.w > 0);
      CHECK(p.w <= 1);
    }
    gt_total += static_cast<int64_t>(gt.size());
    predicted += static_cast<int64_t>(pred.size());
    for (const TxtBox& g : gt) {
      bool hit = false;
      for (const TxtBox& p : pred) hit = hit || (p.cls == g.cls && iou(p, g) >= 0.5);
      found += hit;
    }
  }
  MESSAGE("detect: ", found, " of ", gt_total, " labelled shapes found (IoU >= 0.5, same class), ", predicted,
          " boxes predicted");
  // A box of the right class at IoU >= 0.5 with a label does not happen by chance: the txt boxes are
  // where the shapes are, in the labels' normalisation (at --conf 0.1 the one-minute model finds 6 of the 15).
  CHECK(found * 5 >= gt_total);  // 6 of 15 when measured
  CHECK(dl.find("image 8/8") != std::string::npos);

  // The darknet pair (last.weights + the cfg from the metadata) gives the same txt files.
  const fs::path cfg_file = d.path / "trained.cfg";
  std::ofstream(cfg_file) << meta["cfg_text"].as_string();
  const std::string det2 = d / "detect_darknet";
  REQUIRE(ringgrad("detect --weights " + (fs::path(out) / "last.weights").string() + " --cfg " + cfg_file.string() +
                       " --data " + data + " --img 96 --source " + src.string() + " --out " + det2 + " --save-txt --save-conf --conf 0.1",
                   d.path / "detect2.log") == 0);
  for (int i = 0; i < 8; ++i) {
    char stem[32];
    std::snprintf(stem, sizeof(stem), "%06d.txt", i);
    CHECK(read_file(fs::path(det2) / "labels" / stem) == read_file(fs::path(det_out) / "labels" / stem));
  }
}

// ---- DDP == one process

TEST_CASE("e2e: train-detector on 2 DDP ranks equals one process with the global batch (darknet loss, SyncBN)") {
  TempDir d;
  const std::string data = make_shapes(d, "tiny", 3, 24, 4, 64, 96, 0.3, 3);
  // 3 optimizer steps of 8 images (4 per rank); the darknet loss is per image, so DDP's mean over
  // equal shards is the global batch's; SyncBN gives every rank the global batch statistics.
  const std::string common = " --img 64 --epochs 1 --batch-size 8 --accumulate 1 --loss darknet --lr 0.01 "
                             "--warmup-epochs 0 --no-mosaic --workers 1";
  REQUIRE(ringgrad(small_run(data, d / "one") + common, d.path / "one.log", "OMP_NUM_THREADS=1") == 0);
  const fs::path two_log = d.path / "two.log";
  REQUIRE(ringgrad(small_run(data, d / "two") + common + " --device cpu,cpu --sync-bn", two_log, "OMP_NUM_THREADS=1") == 0);
  const std::string tl = read_file(two_log);
  INFO("2-rank log:\n", tl);
  CHECK(tl.find("batch 8 global = 4 per rank") != std::string::npos);
  CHECK(tl.find("global batch 8 = 4 per rank x 2 (") != std::string::npos);  // the header says it is global
  const rg::nn::SafeTensors a = rg::nn::load_safetensors(d.path / "one" / "last.safetensors");
  const rg::nn::SafeTensors b = rg::nn::load_safetensors(d.path / "two" / "last.safetensors");
  // How far 3 steps moved the weights from their initialisation, against how far the two runs differ.
  REQUIRE(ringgrad(small_run(data, d / "init") + common + " --lr 0", d.path / "init.log", "OMP_NUM_THREADS=1") == 0);
  const rg::nn::SafeTensors init = rg::nn::load_safetensors(d.path / "init" / "last.safetensors");
  const double moved = max_model_diff(a, init), diff = max_model_diff(a, b);
  MESSAGE("DDP 2 x 4 vs one process x 8: max |diff| ", diff, " (training moved the weights by up to ", moved, ")");
  CHECK(moved > 1e-3);
  CHECK(diff <= 1e-4 * std::max(1.0, moved * 10));
  CHECK(trainer_meta(b)["world_size"].as_int() == 2);
}

// ---- exact resume

TEST_CASE("e2e: a resumed detection run ends bitwise equal to an uninterrupted one (CPU)") {
  TempDir d;
  const std::string data = make_shapes(d, "tiny", 3, 20, 4, 64, 96, 0.3, 3);
  // SGD + Nesterov, YOLO warmup into the cosine schedule, EMA, multi-scale and mosaic: all the state.
  const std::string common = " --img 64 --epochs 3 --batch-size 4 --accumulate 2 --warmup-epochs 1 --ema "
                             "--multi-scale --workers 2";
  REQUIRE(ringgrad(small_run(data, d / "straight") + common, d.path / "straight.log", "OMP_NUM_THREADS=2") == 0);
  REQUIRE(ringgrad(small_run(data, d / "part") + common + " --stop-after-epochs 2", d.path / "part.log",
                   "OMP_NUM_THREADS=2") == 0);
  const fs::path rlog = d.path / "resumed.log";
  REQUIRE(ringgrad("train-detector --resume " + (d / "part/last.safetensors") + " --workers 0", rlog, "OMP_NUM_THREADS=2") ==
          0);
  INFO("resumed log:\n", read_file(rlog));
  CHECK(read_file(rlog).find("resumed from") != std::string::npos);
  const rg::nn::SafeTensors x = rg::nn::load_safetensors(d.path / "straight" / "last.safetensors");
  const rg::nn::SafeTensors y = rg::nn::load_safetensors(d.path / "part" / "last.safetensors");
  CHECK(bitwise_differences(x, y) == 0);  // weights, BN buffers, momentum buffers, EMA
  CHECK(*x.meta("optimizer") == *y.meta("optimizer"));
  CHECK(*x.meta("scheduler") == *y.meta("scheduler"));
  CHECK(trainer_meta(x)["model_val"].dump() == trainer_meta(y)["model_val"].dump());
  CHECK(read_file(d.path / "straight" / "last.weights") == read_file(d.path / "part" / "last.weights"));
}

// ---- the progress line

TEST_CASE("e2e: the progress line shows the losses of the optimizer step in progress (default --accumulate)") {
  // Batch 2 accumulates to 64 images: the whole epoch is one optimizer step, whose losses join the
  // epoch's sums only once the NaN guard passed it; the bar must show them before that.
  TempDir d;
  const std::string data = make_shapes(d, "tiny", 3, 20, 4, 64, 96, 0.3, 3);
  REQUIRE(ringgrad(small_run(data, d / "acc") + " --img 64 --epochs 1 --batch-size 2 --workers 0 --log-every 1",
                   d.path / "acc.log") == 0);
  const std::string log = read_file(d.path / "acc.log");
  INFO("log:\n", log);
  size_t bars = 0, zero = 0;
  for (size_t at = log.find("] "); at != std::string::npos; at = log.find("] ", at + 1)) {
    const size_t end = log.find('\n', at);
    const std::string line = log.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (line.find(" box ") == std::string::npos) continue;
    ++bars;
    zero += line.find("box 0.0000  obj 0.0000  cls 0.0000") != std::string::npos;
  }
  CHECK(bars >= 5);
  CHECK(zero == 0);
}

// ---- bad inputs

TEST_CASE("e2e: detection inputs that are wrong give clean errors") {
  TempDir d;
  const std::string data = make_shapes(d, "tiny", 3, 4, 2, 64, 64, 0.3, 2);
  const std::string base = small_run(data, d / "run") + " --img 64 --epochs 1 --batch-size 2";

  // A truncated .weights file: the error names the file and both byte counts, in training and in detect.
  {
    rg::models::DarknetCfg c3 = rg::models::load_darknet_cfg("yolov3-tiny.cfg");
    rg::models::set_num_classes(c3, 3);
    rg::models::Darknet m(c3);
    const std::string full = d / "full.weights";
    rg::models::save_darknet_weights(m, full);
    const std::string bytes = read_file(full);
    const std::string cut = d / "cut.weights";
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 1000);
    for (const std::string& cmd :
         {base + " --weights " + cut, "detect --weights " + cut + " --cfg " + (d / "c3.cfg") + " --source " + data +
                                          "/images/val --out " + (d / "o")}) {
      std::ofstream(d / "c3.cfg") << rg::models::darknet_cfg_text(c3);
      const fs::path log = d.path / "trunc.log";
      CHECK(ringgrad(cmd, log) == 1);
      const std::string e = read_file(log);
      INFO(cmd, "\n", e);
      CHECK(e.find(std::to_string(bytes.size() - 1000)) != std::string::npos);
      CHECK(e.find(std::to_string(bytes.size())) != std::string::npos);
      CHECK(e.find("cut.weights") != std::string::npos);
    }
    // The whole file loads.
    CHECK(ringgrad(base + " --weights " + full + " --lr 0", d.path / "full.log") == 0);
  }
  // A cfg file whose classes (80) disagree with data.yaml (3): named both, and how to fix it.
  {
    const std::string cfg = d / "mine.cfg";
    fs::copy_file(rg::models::find_darknet_cfg("yolov3-tiny.cfg"), cfg);
    const fs::path log = d.path / "classes.log";
    CHECK(ringgrad(base + " --cfg " + cfg, log) == 1);
    const std::string e = read_file(log);
    INFO(e);
    CHECK(e.find("mine.cfg") != std::string::npos);
    CHECK(e.find("80 classes") != std::string::npos);
    CHECK(e.find("nc 3") != std::string::npos);
    CHECK(e.find("--rewrite-classes") != std::string::npos);
    // The shipped cfg by name is rewritten (with a line saying so); --no-rewrite-classes refuses that.
    CHECK(ringgrad(base + " --cfg yolov3-tiny.cfg --no-rewrite-classes", log) == 1);
    CHECK(read_file(log).find("nc 3") != std::string::npos);
  }
  // An unreadable image in the source folder is skipped with a message; the others are processed.
  {
    REQUIRE(fs::exists(d.path / "run" / "last.safetensors"));  // from the full-weights run above
    const fs::path src = d.path / "src";
    fs::create_directories(src);
    fs::copy_file(fs::path(data) / "images" / "val" / "000000.jpg", src / "a.jpg");
    std::ofstream(src / "b.jpg") << "this is not a picture";
    std::ofstream(src / "notes.txt") << "ignored";
    const fs::path dlog = d.path / "skip.log";
    CHECK(ringgrad("detect --weights " + (d / "run/last.safetensors") + " --source " + src.string() + " --out " +
                       (d / "det"),
                   dlog) == 0);
    const std::string e = read_file(dlog);
    INFO(e);
    CHECK(e.find("b.jpg: skipped") != std::string::npos);
    CHECK(e.find("1 image(s)") != std::string::npos);
    CHECK(e.find("1 skipped") != std::string::npos);
    CHECK(fs::exists(d.path / "det" / "a.jpg"));
    CHECK_FALSE(fs::exists(d.path / "det" / "b.jpg"));
    // A folder with nothing readable is an error.
    fs::remove(src / "a.jpg");
    CHECK(ringgrad("detect --weights " + (d / "run/last.safetensors") + " --source " + src.string() + " --out " +
                       (d / "det"),
                   dlog) == 1);
  }
}

TEST_CASE("e2e: a training set without any box is warned about") {
  TempDir d;
  const std::string data = make_shapes(d, "empty", 3, 4, 2, 64, 64, 0.3, 2);
  for (const auto& e : fs::directory_iterator(fs::path(data) / "labels" / "train")) {
    if (e.path().extension() == ".txt") std::ofstream(e.path(), std::ios::trunc);
  }
  const fs::path log = d.path / "empty.log";
  REQUIRE(ringgrad(small_run(data, d / "run") + " --img 64 --epochs 1 --batch-size 2", log) == 0);
  const std::string e = read_file(log);
  INFO(e);
  CHECK(e.find("4 backgrounds") != std::string::npos);
  CHECK(e.find("WARNING: the training labels") != std::string::npos);
  CHECK(e.find("hold no box at all") != std::string::npos);
}

// ---- the DP-vs-DDP benchmark on a YOLO

TEST_CASE("e2e: bench dp-vs-ddp --model yolov3-tiny runs the v3 loss on synthetic targets") {
  TempDir d;
  const fs::path log = d.path / "bench.log";
  REQUIRE(ringgrad("bench dp-vs-ddp --device cpu --model yolov3-tiny --num-classes 3 --image-size 64 "
                   "--batch-per-replica 2 --steps 2 --warmup 1 --replicas 1,2 --skip-no-overlap --out " + (d / "b"),
                   log) == 0);
  const std::string r = read_file(log);
  INFO(r);
  std::ifstream csv(d.path / "b" / "dp_vs_ddp.csv");
  std::string header, line;
  REQUIRE(std::getline(csv, header));
  int rows = 0;
  while (std::getline(csv, line)) {
    if (line.empty()) continue;
    ++rows;
    CHECK(line.find(",yolov3-tiny,64,2,") != std::string::npos);
  }
  CHECK(rows == 5);  // single 1; dp 1, 2; ddp 1, 2
  CHECK(r.find("yolov3-tiny") != std::string::npos);
  // A size that is not a multiple of 32 is refused.
  CHECK(ringgrad("bench dp-vs-ddp --model yolov3-tiny --image-size 70", log) == 1);
  CHECK(read_file(log).find("multiple of 32") != std::string::npos);
}
