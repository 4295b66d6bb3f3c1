// The darknet cfg parser and the shipped cfgs: every layer's shape, parameter counts and BFLOPs against
// the tests' own formulas and the published figures, [net] and [yolo] values, each error kind naming
// file, line, section and key, the --classes rewrite, writing the text back, and finding the files.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "cfg_oracle.h"
#include "models/darknet.h"
#include "models/darknet_cfg.h"
#include "test_util.h"

using namespace rg;
using namespace rg::models;
using rg::test::contains;
using rg::test::error_of;

namespace {

std::string cfg_text(const std::string& name) { return test::oracle::read_text(find_darknet_cfg(name)); }

// A cfg made of sections given as text after a small [net].
std::string net_and(const std::string& layers) { return "[net]\nwidth=64\nheight=64\nchannels=3\n\n" + layers; }

const char* kConv8 = "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n";

}  // namespace

TEST_CASE("yolov3.cfg at 416: every layer's shape as the cfg's formulas give it; heads 13, 26, 52 with 255 channels") {
  const DarknetCfg cfg = load_darknet_cfg("yolov3.cfg");
  const auto rows = darknet_layer_table(cfg, 416, 416);
  const auto expected = test::oracle::layers(cfg_text("yolov3.cfg"), 416, 416);
  REQUIRE(rows.size() == 107);
  REQUIRE(expected.size() == 107);
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::array<int64_t, 3> want{expected[i].c, expected[i].h, expected[i].w};
    CHECK_MESSAGE(rows[i].out == want, "layer ", i, " (", expected[i].type, ")");
  }
  // A few by hand: the backbone's stages, the SPP-less neck and the concatenations.
  auto out = [&](int i) { return rows[static_cast<size_t>(i)].out; };
  CHECK(out(0) == std::array<int64_t, 3>{32, 416, 416});
  CHECK(out(1) == std::array<int64_t, 3>{64, 208, 208});
  CHECK(out(36) == std::array<int64_t, 3>{256, 52, 52});
  CHECK(out(61) == std::array<int64_t, 3>{512, 26, 26});
  CHECK(out(74) == std::array<int64_t, 3>{1024, 13, 13});
  CHECK(out(83) == std::array<int64_t, 3>{512, 13, 13});
  CHECK(out(85) == std::array<int64_t, 3>{256, 26, 26});
  CHECK(out(86) == std::array<int64_t, 3>{768, 26, 26});
  CHECK(out(98) == std::array<int64_t, 3>{384, 52, 52});
  const int heads[] = {82, 94, 106};
  const int64_t grids[] = {13, 26, 52}, strides[] = {32, 16, 8};
  REQUIRE(cfg.heads.size() == 3);
  for (int k = 0; k < 3; ++k) {
    CHECK(rows[static_cast<size_t>(heads[k])].type == "yolo");
    CHECK(out(heads[k]) == std::array<int64_t, 3>{255, grids[k], grids[k]});
    CHECK(cfg.heads[static_cast<size_t>(k)].stride == strides[k]);
    CHECK(cfg.heads[static_cast<size_t>(k)].cfg_index == heads[k]);
    CHECK(cfg.heads[static_cast<size_t>(k)].grid_h(416) == grids[k]);
  }
  CHECK(cfg.max_stride() == 32);
}

TEST_CASE("parameter counts: the tests' per-layer formula, the model's tensors, and the published 61.9 M / 8.9 M / 63.0 M") {
  struct Case {
    const char* name;
    double published;
  };
  for (const Case c : {Case{"yolov3.cfg", 61.9e6}, Case{"yolov3-tiny.cfg", 8.9e6}, Case{"yolov3-spp.cfg", 63.0e6}}) {
    CAPTURE(c.name);
    int64_t formula = 0;
    for (const auto& l : test::oracle::layers(cfg_text(c.name), 416, 416)) formula += l.params;
    int64_t table = 0;
    for (const auto& r : darknet_layer_table(load_darknet_cfg(c.name), 416, 416)) table += r.params;
    const auto model = darknet_from_cfg(c.name);
    int64_t tensors = 0;
    for (const auto& p : model->parameters()) tensors += p.numel();
    CHECK(table == formula);
    CHECK(tensors == formula);
    CHECK(std::fabs(static_cast<double>(formula) - c.published) < 0.05e6);
  }
}

TEST_CASE("BFLOPs: convolutions by the tests' formula; totals as darknet prints them (65.879 for yolov3-416)") {
  for (const char* name : {"yolov3.cfg", "yolov3-tiny.cfg", "yolov3-spp.cfg"}) {
    CAPTURE(name);
    double conv = 0, want = 0;
    for (const auto& r : darknet_layer_table(load_darknet_cfg(name), 416, 416)) conv += r.type == "conv" ? r.bflops : 0;
    for (const auto& l : test::oracle::layers(cfg_text(name), 416, 416)) want += l.conv_flops / 1e9;
    CHECK(conv == doctest::Approx(want).epsilon(1e-12));
  }
  auto total = [](const char* name) {
    double t = 0;
    for (const auto& r : darknet_layer_table(load_darknet_cfg(name), 416, 416)) t += r.bflops;
    return t;
  };
  CHECK(std::fabs(total("yolov3.cfg") - 65.879) < 0.0005);       // darknet: "Total BFLOPS 65.879"
  CHECK(std::fabs(total("yolov3-tiny.cfg") - 5.571) < 0.0005);   // darknet: "Total BFLOPS 5.571"
  const std::string table = format_darknet_layer_table(darknet_layer_table(load_darknet_cfg("yolov3.cfg"), 416, 416));
  CHECK(contains(table, "61949149 parameters"));
  CHECK(contains(table, "65.879 BFLOPs"));
}

TEST_CASE("[net] is kept as the training defaults; [yolo] fills each head's spec (anchors of the mask in pixels)") {
  const DarknetCfg cfg = load_darknet_cfg("yolov3.cfg");
  const DarknetNetConfig& n = cfg.net;
  CHECK(n.batch == 64);
  CHECK(n.subdivisions == 16);
  CHECK(n.width == 608);
  CHECK(n.height == 608);
  CHECK(n.channels == 3);
  CHECK(n.momentum == 0.9);
  CHECK(n.decay == 0.0005);
  CHECK(n.learning_rate == 0.001);
  CHECK(n.burn_in == 1000);
  CHECK(n.max_batches == 500200);
  CHECK(n.policy == "steps");
  CHECK(n.steps == std::vector<int64_t>{400000, 450000});
  CHECK(n.scales == std::vector<double>{0.1, 0.1});
  CHECK(n.saturation == 1.5);
  CHECK(n.exposure == 1.5);
  CHECK(n.hue == 0.1);
  const YoloHeadSpec& h = cfg.heads[0];
  CHECK(h.mask == std::vector<int64_t>{6, 7, 8});
  CHECK(h.anchors == std::vector<std::array<float, 2>>{{116, 90}, {156, 198}, {373, 326}});
  CHECK(h.all_anchors.size() == 9);
  CHECK(h.all_anchors[1] == std::array<float, 2>{16, 30});
  CHECK(cfg.heads[2].anchors[0] == std::array<float, 2>{10, 13});
  CHECK(h.num_classes == 80);
  CHECK(h.ignore_thresh == doctest::Approx(0.7));
  CHECK(h.truth_thresh == 1.0f);
  CHECK(h.jitter == doctest::Approx(0.3));
  CHECK(h.channels() == 255);

  // Every [yolo] key, and darknet's defaults when absent.
  const DarknetCfg c2 = parse_darknet_cfg(net_and(std::string(kConv8) +
                                                  "[convolutional]\nfilters=7\nsize=1\nactivation=linear\n"
                                                  "[yolo]\nmask=1\nanchors=4,5, 6,7\nclasses=2\nnum=2\njitter=.1\n"
                                                  "ignore_thresh=.6\ntruth_thresh=.9\nscale_x_y=1.05\n"
                                                  "iou_normalizer=0.07\ncls_normalizer=2\nobj_normalizer=3\n"
                                                  "iou_loss=ciou\nrandom=1\nnms_kind=greedynms\n"),
                                          "all.cfg");
  const YoloHeadSpec& y = c2.heads[0];
  CHECK(y.anchors == std::vector<std::array<float, 2>>{{6, 7}});
  CHECK(y.num_classes == 2);
  CHECK(y.jitter == doctest::Approx(0.1));
  CHECK(y.ignore_thresh == doctest::Approx(0.6));
  CHECK(y.truth_thresh == doctest::Approx(0.9));
  CHECK(y.scale_x_y == doctest::Approx(1.05));
  CHECK(y.iou_normalizer == doctest::Approx(0.07));
  CHECK(y.cls_normalizer == 2.0f);
  CHECK(y.obj_normalizer == 3.0f);
  CHECK(y.iou_loss == "ciou");
  CHECK(y.stride == 1);
  const DarknetCfg c3 = parse_darknet_cfg(
      net_and(std::string(kConv8) + "[convolutional]\nfilters=50\nsize=1\nactivation=linear\n[yolo]\nanchors=4,5, 6,7\n"),
      "defaults.cfg");
  const YoloHeadSpec& d = c3.heads[0];
  CHECK(d.mask == std::vector<int64_t>{0, 1});  // no mask: every anchor
  CHECK(d.num_classes == 20);
  CHECK(d.jitter == doctest::Approx(0.2));
  CHECK(d.ignore_thresh == doctest::Approx(0.5));
  CHECK(d.iou_normalizer == doctest::Approx(0.75));
  CHECK(d.iou_loss == "mse");
}

TEST_CASE("cfg errors name the file, the line, the section number and the key") {
  auto err = [](const std::string& layers) { return error_of([&] { parse_darknet_cfg(net_and(layers), "bad.cfg"); }); };
  // Lines: [net] block is lines 1-4, an empty line 5, the first layer's header on line 6.
  std::string e = err(std::string(kConv8) + "[dropout]\nprobability=.5\n");
  CHECK(contains(e, "bad.cfg:13"));
  CHECK(contains(e, "section 2"));
  CHECK(contains(e, "unknown section [dropout]"));

  e = err(std::string(kConv8) + "[route]\nlayers=-1\nfoo=3\n");
  CHECK(contains(e, "bad.cfg:15: section 2 [route] (layer 1), key 'foo': unknown key 'foo'"));

  e = err(std::string(kConv8) + "[convolutional]\nfilters=2x\n");
  CHECK(contains(e, "bad.cfg:14: section 2 [convolutional] (layer 1), key 'filters': '2x' is not an integer"));

  e = err(std::string(kConv8) + "[route]\nlayers=-1, 5\n");
  CHECK(contains(e, "bad.cfg:14: section 2 [route] (layer 1), key 'layers': layer 5 does not exist"));
  e = err(std::string(kConv8) + "[route]\nlayers=-3\n");
  CHECK(contains(e, "key 'layers': layer -3 (relative: -2) does not exist"));
  e = err(std::string(kConv8) + "[shortcut]\nfrom=-2\n");
  CHECK(contains(e, "bad.cfg:14: section 2 [shortcut] (layer 1), key 'from': layer -2 (relative: -1) does not exist"));

  // Found by fuzz_darknet_cfg: an anchor of 1e80 became inf in float32, and the cfg written back did not parse.
  e = err(std::string(kConv8) + "[convolutional]\nfilters=18\nsize=1\nactivation=linear\n[yolo]\nmask=0,1,2\n"
                                 "anchors=10,13, 16,30, 1e80,23\nclasses=1\nnum=3\n");
  CHECK_MESSAGE(contains(e, "key 'anchors': anchor 2 (1e+80, 23) must be positive and finite in float32"), e);

  // Found by fuzz_darknet_cfg: filters=511111111111111112 overflowed the layer table's parameter
  // count (Note [Cfg bounds]); every size key is bounded, and the message names the range.
  e = err(std::string(kConv8) + "[convolutional]\nfilters=511111111111111112\nsize=3\n");
  CHECK_MESSAGE(contains(e, "bad.cfg:14: section 2 [convolutional] (layer 1), key 'filters': must be in 1..65536, got "
                            "511111111111111112"), e);
  CHECK(contains(err(std::string(kConv8) + "[convolutional]\nsize=4096\n"), "key 'size': must be in 1..255"));
  CHECK(contains(err(std::string(kConv8) + "[maxpool]\nsize=2\nstride=99999\n"), "key 'stride': must be in 1..1024"));
  CHECK(contains(err(std::string(kConv8) + "[upsample]\nstride=4097\n"), "key 'stride': must be in 1..1024"));
  CHECK(contains(error_of([] { parse_darknet_cfg("[net]\nwidth=9999999\n", "x.cfg"); }),
                 "key 'width': must be in 1..65536"));

  // Shapes that do not concatenate (different strides) or add (different channels, strides).
  const std::string down = "[convolutional]\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n";
  e = err(std::string(kConv8) + down + "[route]\nlayers=-1, 0\n");
  CHECK(contains(e, "bad.cfg:20: section 3 [route] (layer 2), key 'layers': cannot concatenate layer 0"));
  e = err(std::string(kConv8) + "[convolutional]\nfilters=4\nsize=1\nactivation=leaky\n[shortcut]\nfrom=0\n");
  CHECK(contains(e, "section 3 [shortcut] (layer 2), key 'from': cannot add layer 0 (8 channels, stride 1) to layer 1 "
                    "(4 channels, stride 1)"));
  e = err(std::string(kConv8) + down + "[shortcut]\nfrom=0\n");
  CHECK(contains(e, "key 'from': cannot add layer 0 (8 channels, stride 1) to layer 1 (8 channels, stride 2)"));
  // A [yolo] whose input has the wrong channel count (the classic forgotten filters= edit).
  e = err(std::string(kConv8) + "[yolo]\nanchors=4,5\nclasses=2\n");
  CHECK(contains(e, "section 2 [yolo] (layer 1), key 'classes': its input, layer 0, has 8 channels but 1 anchors x (2 "
                    "classes + 5) = 7 are needed"));

  // Smaller kinds.
  CHECK(contains(err(std::string(kConv8) + "filters=3\n"), "key 'filters' is given twice (lines 8 and 13)"));
  CHECK(contains(err("[convolutional]\nactivation=elu\n"), "key 'activation': unsupported activation 'elu'"));
  CHECK(contains(err("[yolo]\nanchors=4,5,6\n"), "key 'anchors': an even number of values"));
  CHECK(contains(err("[yolo]\nanchors=4,5\nmask=3\n"), "key 'mask': anchor index 3 out of range 0..0"));
  CHECK(contains(err("[yolo]\nanchors=4,5\nnum=9\n"), "key 'num': num=9 but 'anchors' holds 1 (w,h) pairs"));
  CHECK(contains(err("[route]\n"), "key 'layers' is required"));
  CHECK(contains(error_of([] { parse_darknet_cfg("[convolutional]\nfilters=3\n", "x.cfg"); }),
                 "x.cfg:1: the first section must be [net]"));
  CHECK(contains(error_of([] { parse_darknet_cfg("filters=3\n", "x.cfg"); }), "x.cfg:1: key 'filters' before the first"));
  CHECK(contains(error_of([] { parse_darknet_cfg("[net]\nwidth=abc\n", "x.cfg"); }),
                 "x.cfg:2: section 0 [net], key 'width': 'abc' is not an integer"));
}

TEST_CASE("route: several layers, negative and absolute, groups and group_id; maxpool sizes darknet's way") {
  const DarknetCfg cfg = parse_darknet_cfg(
      net_and(std::string(kConv8) +                                      // 0: 8 x 64 x 64
              "[convolutional]\nfilters=6\nsize=1\nactivation=relu\n"   // 1: 6
              "[route]\nlayers=0, -1\n"                                  // 2: 14
              "[route]\nlayers=0\ngroups=2\ngroup_id=1\n"                // 3: 4
              "[maxpool]\nsize=2\nstride=1\n"                            // 4: keeps 64
              "[maxpool]\nsize=5\nstride=1\n"                            // 5: keeps 64 (SPP)
              "[maxpool]\nsize=2\nstride=2\n"                            // 6: 32
              "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=linear\n"  // 7: 16
              "[maxpool]\nsize=2\nstride=2\n"                            // 8: 8
              "[maxpool]\nsize=2\nstride=2\n"                            // 9: 4
              "[maxpool]\nsize=2\nstride=2\n"                            // 10: 2
              "[maxpool]\nsize=2\nstride=2\n"),                          // 11: 1
      "routes.cfg");
  CHECK(cfg.layers[2].inputs == std::vector<int64_t>{0, 1});
  CHECK(cfg.layers[2].out_channels == 14);
  CHECK(cfg.layers[3].out_channels == 4);
  const auto rows = darknet_layer_table(cfg, 64, 64);
  CHECK(rows[4].out == std::array<int64_t, 3>{4, 64, 64});
  CHECK(rows[5].out == std::array<int64_t, 3>{4, 64, 64});
  CHECK(rows[6].out == std::array<int64_t, 3>{4, 32, 32});
  CHECK(cfg.max_stride() == 64);
  CHECK(contains(error_of([&] { darknet_layer_table(cfg, 96, 64); }), "not a multiple of the network's largest stride 64"));
}

TEST_CASE("--classes rewrites every head's filters to (N + 5) x 3 and its classes; the text round-trips") {
  DarknetCfg cfg = load_darknet_cfg("yolov3.cfg");
  set_num_classes(cfg, 3);
  for (const auto& h : cfg.heads) {
    CHECK(h.num_classes == 3);
    CHECK(cfg.layers[static_cast<size_t>(h.cfg_index - 1)].filters == 24);
    CHECK(cfg.layers[static_cast<size_t>(h.cfg_index)].out_channels == 24);
  }
  const auto rows = darknet_layer_table(cfg, 416, 416);
  CHECK(rows[106].out == std::array<int64_t, 3>{24, 52, 52});
  // What the user would write by hand parses to the same network.
  const DarknetCfg again = parse_darknet_cfg(darknet_cfg_text(cfg), "again.cfg");
  REQUIRE(again.layers.size() == cfg.layers.size());
  for (size_t i = 0; i < cfg.layers.size(); ++i) {
    CAPTURE(i);
    CHECK(again.layers[i].type == cfg.layers[i].type);
    CHECK(again.layers[i].out_channels == cfg.layers[i].out_channels);
    CHECK(again.layers[i].inputs == cfg.layers[i].inputs);
    CHECK(again.layers[i].filters == cfg.layers[i].filters);
    CHECK(again.layers[i].activation == cfg.layers[i].activation);
  }
  CHECK(again.heads[1].anchors == cfg.heads[1].anchors);
  CHECK(again.heads[1].ignore_thresh == cfg.heads[1].ignore_thresh);
  CHECK(again.net.steps == cfg.net.steps);
  CHECK(again.net.learning_rate == cfg.net.learning_rate);
  // The builder's option does the same, and the head convolution follows.
  const auto model = darknet_from_cfg("yolov3-tiny.cfg", DarknetOptions{.num_classes = 1});
  CHECK(model->heads()[0].channels() == 18);
  CHECK(model->layer(15)->child("Conv2d")->param("weight").size(0) == 18);
  CHECK(model->layer(22)->child("Conv2d")->param("bias").size(0) == 18);
  // set_anchors replaces every head's anchors, keeping the masks.
  std::vector<std::array<float, 2>> six{{1, 2}, {3, 4}, {5, 6}, {7, 8}, {9, 10}, {11, 12}};
  DarknetCfg tiny = load_darknet_cfg("yolov3-tiny.cfg");
  set_anchors(tiny, six);
  CHECK(tiny.heads[0].anchors == std::vector<std::array<float, 2>>{{7, 8}, {9, 10}, {11, 12}});
  CHECK(parse_darknet_cfg(darknet_cfg_text(tiny)).heads[1].anchors[2] == std::array<float, 2>{5, 6});
}

TEST_CASE("shipped cfgs are found by name from any working directory, and RINGGRAD_CFG_DIR adds a place") {
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(std::filesystem::temp_directory_path());
  const std::string a = find_darknet_cfg("yolov3-tiny.cfg"), b = find_darknet_cfg("yolov3-tiny");
  std::filesystem::current_path(cwd);
  CHECK(std::filesystem::exists(a));
  CHECK(a == b);
  const auto dir = std::filesystem::temp_directory_path() / ("rg_cfg_dir_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  { std::ofstream(dir / "mine.cfg") << net_and(kConv8); }
  ::setenv("RINGGRAD_CFG_DIR", dir.c_str(), 1);
  CHECK(load_darknet_cfg("mine").layers.size() == 1);
  ::unsetenv("RINGGRAD_CFG_DIR");
  const std::string e = error_of([] { find_darknet_cfg("no-such-net"); });
  CHECK(contains(e, "darknet cfg 'no-such-net' not found; searched:"));
  CHECK(contains(e, "models/cfg"));
  std::filesystem::remove_all(dir);
}
