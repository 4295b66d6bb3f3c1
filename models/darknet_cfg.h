// Darknet .cfg files: the text parser, the typed layer definitions with darknet's defaults and checks
// (channels, strides, routes), the --classes rewrite, writing a cfg back out, and where the shipped
// cfg files (models/cfg/) are found at run time.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/yolo_spec.h"

namespace rg::models {

enum class DarknetLayerType { Convolutional, Shortcut, Route, Upsample, MaxPool, Yolo };
enum class DarknetActivation { Leaky, Linear, Logistic, Relu, Mish, Swish };

const char* layer_type_name(DarknetLayerType t);     // the section name: "convolutional", "route", ...
const char* activation_name(DarknetActivation a);    // the cfg spelling: "leaky", "linear", ...

// Options of the cfg that darknet reads but that do not change the network (augmentation, solver
// details, the [yolo] training switches), kept as read: key, value.
using CfgOptions = std::vector<std::pair<std::string, std::string>>;

// [net]: the model's training defaults, with darknet's defaults for absent keys (width and height
// 416 and channels 3 here, where darknet requires them).
struct DarknetNetConfig {
  int64_t width = 416, height = 416, channels = 3;
  int64_t batch = 1, subdivisions = 1;
  double momentum = 0.9, decay = 0.0001, learning_rate = 0.001;
  int64_t burn_in = 0, max_batches = 0;
  std::string policy = "constant";  // constant | steps | step | exp | poly | sig | random | sgdr
  std::vector<int64_t> steps;       // policy=steps: batch numbers ...
  std::vector<double> scales;       // ... and the learning-rate factors applied at them
  double angle = 0, saturation = 1, exposure = 1, hue = 0;
  CfgOptions other;  // the other darknet [net] keys we accept (power, mosaic, flip, ...), as read
};

// One layer (one section after [net]). Fields not used by the layer's type keep their defaults.
struct DarknetLayer {
  DarknetLayerType type = DarknetLayerType::Convolutional;
  int64_t index = 0;  // the layer's index (module_list.<index>); [net] is not a layer
  int64_t line = 0;   // the line of the section header
  CfgOptions keys;    // every key as read (for error messages and writing the cfg back)
  std::vector<int64_t> key_lines;  // the line of each entry of `keys`

  // [convolutional]
  int64_t filters = 1, size = 1, stride = 1, padding = 0, groups = 1;
  bool batch_normalize = false;
  DarknetActivation activation = DarknetActivation::Logistic;  // darknet's default (shortcut: linear)
  // [shortcut] from / [route] layers, as absolute layer indices
  std::vector<int64_t> inputs;
  int64_t route_groups = 1, group_id = 0;
  // [maxpool] uses size, stride and padding (darknet's default padding: size - 1); [upsample] stride
  // [yolo]: its entry in DarknetCfg::heads
  int64_t head = -1;

  // Resolved by resolve_darknet_cfg: output channels, and the downsampling factor in input pixels
  // per output cell as a fraction factor_num / factor_den (upsampling divides).
  int64_t out_channels = 0;
  int64_t factor_num = 1, factor_den = 1;

  // The line of `key` in this section, or the section's own line when absent.
  int64_t line_of(const std::string& key) const;
};

struct DarknetCfg {
  std::string name = "<cfg>";  // file name, for messages
  DarknetNetConfig net;
  std::vector<DarknetLayer> layers;
  std::vector<YoloHeadSpec> heads;  // in cfg order; stride and cfg_index filled by resolve_darknet_cfg

  // The largest downsampling factor of any layer (32 for yolov3): inputs must be multiples of it.
  int64_t max_stride() const;
  // "yolov3.cfg:712: section 84 [route] (layer 83), key 'layers'": the prefix of every error about
  // a layer (sections count from 0, [net] being section 0).
  std::string where(const DarknetLayer& l, const std::string& key = "") const;
};

// Parses cfg text. `name` is used in messages. Errors name the file, line, section number and key:
// an unknown section or key, a bad number, a route or shortcut to a layer that does not exist,
// channels or strides that do not concatenate or add, a [yolo] whose input has the wrong channels.
DarknetCfg parse_darknet_cfg(const std::string& text, const std::string& name = "<cfg>");
// Reads a file: `path` as given, else a shipped cfg by name (find_darknet_cfg).
DarknetCfg load_darknet_cfg(const std::string& path);

// Recomputes channels, factors and the heads' strides, checking every layer (parse_darknet_cfg
// calls it; call it again after editing a DarknetCfg by hand).
void resolve_darknet_cfg(DarknetCfg& cfg);

// The --classes rewrite users do by hand: every [yolo] gets `classes = n` and the convolution
// feeding it `filters = (n + 5) * len(mask)`.
void set_num_classes(DarknetCfg& cfg, int64_t num_classes);
// New anchors for every [yolo] (its `anchors` line; masks unchanged): AutoAnchor's result.
void set_anchors(DarknetCfg& cfg, const std::vector<std::array<float, 2>>& anchors);

// The cfg as darknet reads it (every section and key; values rewritten by set_num_classes and
// set_anchors). Parsing the text again gives the same DarknetCfg.
std::string darknet_cfg_text(const DarknetCfg& cfg);

// The file for `name_or_path`: the path itself when it exists; else `name_or_path` (a file name like
// "yolov3-tiny.cfg", or without ".cfg") looked up in $RINGGRAD_CFG_DIR, next to the executable
// (<exe dir>/cfg, <exe dir>/../share/ringgrad/cfg, <exe dir>/../models/cfg), then the source tree's
// models/cfg compiled in. Throws listing the places searched.
std::string find_darknet_cfg(const std::string& name_or_path);
// The directories find_darknet_cfg searches, in order.
std::vector<std::string> darknet_cfg_search_dirs();

// ---- the layer table (darknet prints it when it loads a network), at a given input size
struct DarknetLayerInfo {
  int64_t index = 0;
  std::string type;    // "conv", "max", "route", "shortcut", "upsample", "yolo"
  std::string detail;  // "3 x 3/ 1", "2x", "79 61", "from 71", "mask 6,7,8"
  int64_t filters = 0;                 // convolutions: output channels; 0 otherwise
  std::array<int64_t, 3> in{}, out{};  // (C, H, W) of the input (the previous layer's output) and output
  int64_t params = 0;                  // trainable parameters (conv weight + BN weight and bias, or conv bias)
  // darknet's (AlexeyAB's) count, / 1e9: convolution 2 * multiply-adds; maxpool size^2 per output;
  // shortcut one add per output; others 0. YOLOv3 at 416: 65.879 in total, 65.864 in convolutions.
  double bflops = 0;
};
// Every layer's shapes at input (channels, height, width). Throws when the input is not a multiple of
// max_stride(), or when shapes do not concatenate or add at this size (naming section, key and line).
std::vector<DarknetLayerInfo> darknet_layer_table(const DarknetCfg& cfg, int64_t height, int64_t width);
// The table as text, with the totals (parameters and BFLOPs) on the last line.
std::string format_darknet_layer_table(const std::vector<DarknetLayerInfo>& rows);

}  // namespace rg::models
