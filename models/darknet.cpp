// The Darknet module tree: one module_list child per cfg layer, the forward that follows routes and
// shortcuts, keeping only the outputs read again, and the flat head layout of Note [YOLO forward layout].
#include "models/darknet.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "nn/functional.h"

namespace rg::models {

Tensor darknet_activation(const Tensor& x, DarknetActivation a) {
  switch (a) {
    case DarknetActivation::Leaky: return leaky_relu(x, 0.1);
    case DarknetActivation::Linear: return x;
    case DarknetActivation::Logistic: return sigmoid(x);
    case DarknetActivation::Relu: return relu(x);
    case DarknetActivation::Swish: return silu(x);
    case DarknetActivation::Mish: return mish(x);  // x * tanh(ln(1 + e^x))
  }
  return x;
}

// ---- DarknetConv
DarknetConv::DarknetConv(int64_t in_channels, const DarknetLayer& l, const DarknetOptions& o)
    : Cloneable("DarknetConv"), activation_(l.activation), batch_norm_(l.batch_normalize) {
  register_module("Conv2d", std::make_shared<nn::Conv2d>(
                                in_channels, l.filters, l.size,
                                nn::Conv2dOptions{.stride = l.stride, .padding = l.padding, .groups = l.groups,
                                                  .bias = !l.batch_normalize}));
  if (l.batch_normalize) {
    register_module("BatchNorm2d", std::make_shared<nn::BatchNorm2d>(
                                       l.filters, nn::BatchNormOptions{.eps = o.bn_eps, .momentum = o.bn_momentum}));
  }
}

Tensor DarknetConv::forward(const Tensor& x) {
  Tensor h = named_children()[0].second->forward(x);                 // Conv2d
  if (batch_norm_) h = named_children()[1].second->forward(h);       // BatchNorm2d (or its SyncBatchNorm)
  return darknet_activation(h, activation_);
}

std::string DarknetConv::extra_repr() const { return std::string("activation=") + activation_name(activation_); }

// ---- DarknetMaxPool
DarknetMaxPool::DarknetMaxPool(int64_t size, int64_t stride, int64_t padding)
    : Cloneable("DarknetMaxPool"), size_(size), stride_(stride), padding_(padding) {}

Tensor DarknetMaxPool::forward(const Tensor& x) {
  const int64_t before = padding_ / 2, after = padding_ - before;
  nn::functional::Pool2dOptions o;
  o.kernel = {size_, size_};
  o.stride = {stride_, stride_};
  if (before == after && 2 * before <= size_) {
    o.padding = {before, before};  // max_pool2d's own padding is out-of-range = ignored, as darknet
    return nn::functional::max_pool2d(x, o);
  }
  // Uneven padding (size 2 stride 1): pad with -inf, which no window's maximum ever picks.
  const auto opts = TensorOptions(x.dtype()).device(x.device());
  const double ninf = -std::numeric_limits<double>::infinity();
  Tensor h = x;
  for (int64_t dim : {2, 3}) {
    std::vector<Tensor> parts;
    Shape s = h.sizes();
    if (before) {
      s[static_cast<size_t>(dim)] = before;
      parts.push_back(full(s, ninf, opts));
    }
    parts.push_back(h);
    if (after) {
      s[static_cast<size_t>(dim)] = after;
      parts.push_back(full(s, ninf, opts));
    }
    h = cat(parts, dim);
  }
  return nn::functional::max_pool2d(h, o);
}

std::string DarknetMaxPool::extra_repr() const {
  return "size=" + std::to_string(size_) + ", stride=" + std::to_string(stride_) + ", padding=" +
         std::to_string(padding_);
}

// ---- placeholders
DarknetRoute::DarknetRoute(std::vector<int64_t> layers, int64_t groups, int64_t group_id)
    : Cloneable("DarknetRoute"), layers_(std::move(layers)), groups_(groups), group_id_(group_id) {}

std::string DarknetRoute::extra_repr() const {
  std::string s = "layers=[";
  for (size_t i = 0; i < layers_.size(); ++i) s += (i ? ", " : "") + std::to_string(layers_[i]);
  s += "]";
  if (groups_ > 1) s += ", groups=" + std::to_string(groups_) + ", group_id=" + std::to_string(group_id_);
  return s;
}

DarknetShortcut::DarknetShortcut(int64_t from, DarknetActivation activation)
    : Cloneable("DarknetShortcut"), from_(from), activation_(activation) {}

std::string DarknetShortcut::extra_repr() const {
  return "from=" + std::to_string(from_) + ", activation=" + activation_name(activation_);
}

YoloLayer::YoloLayer(YoloHeadSpec spec) : Cloneable("YoloLayer"), spec_(std::move(spec)) {}

std::string YoloLayer::extra_repr() const {
  std::ostringstream o;
  o << "anchors=[";
  for (size_t i = 0; i < spec_.anchors.size(); ++i) {
    o << (i ? ", " : "") << "(" << spec_.anchors[i][0] << ", " << spec_.anchors[i][1] << ")";
  }
  o << "], classes=" << spec_.num_classes << ", stride=" << spec_.stride;
  return o.str();
}

// ---- Darknet
namespace {
// Objectness and class biases of a head convolution (ultralytics' archive; Focal Loss paper §3.3).
void init_head_bias(nn::Conv2d& conv, const YoloHeadSpec& h) {
  NoGradGuard ng;
  const Tensor b = conv.bias().view({h.num_anchors(), 5 + h.num_classes});  // (A, 5 + C)
  b.narrow(1, 4, 1).add_(full({1}, -4.5, TensorOptions(b.dtype()).device(b.device())));
  const double cls = std::log(0.6 / (static_cast<double>(h.num_classes) - 0.99));
  b.narrow(1, 5, h.num_classes).add_(full({1}, cls, TensorOptions(b.dtype()).device(b.device())));
}
}  // namespace

Darknet::Darknet(DarknetCfg cfg, const DarknetOptions& options)
    : Cloneable("Darknet"), cfg_(std::move(cfg)), options_(options) {
  if (options_.num_classes) set_num_classes(cfg_, *options_.num_classes);
  // Spatial checks at the cfg's own size (rounded up to a multiple of the largest stride).
  const int64_t ms = cfg_.max_stride();
  darknet_layer_table(cfg_, (cfg_.net.height + ms - 1) / ms * ms, (cfg_.net.width + ms - 1) / ms * ms);

  keep_.assign(cfg_.layers.size(), false);
  auto list = std::make_shared<nn::ModuleList>();
  int64_t c_in = cfg_.net.channels;
  for (const auto& l : cfg_.layers) {
    std::shared_ptr<nn::Module> m;
    switch (l.type) {
      case DarknetLayerType::Convolutional: m = std::make_shared<DarknetConv>(c_in, l, options_); break;
      case DarknetLayerType::MaxPool: m = std::make_shared<DarknetMaxPool>(l.size, l.stride, l.padding); break;
      case DarknetLayerType::Upsample:
        m = std::make_shared<nn::Upsample>(nn::UpsampleOptions{.scale_factor = static_cast<double>(l.stride)});
        break;
      case DarknetLayerType::Route: m = std::make_shared<DarknetRoute>(l.inputs, l.route_groups, l.group_id); break;
      case DarknetLayerType::Shortcut: m = std::make_shared<DarknetShortcut>(l.inputs[0], l.activation); break;
      case DarknetLayerType::Yolo: m = std::make_shared<YoloLayer>(cfg_.heads[static_cast<size_t>(l.head)]); break;
    }
    for (int64_t ref : l.inputs) keep_[static_cast<size_t>(ref)] = true;
    list->push_back(m);
    c_in = l.out_channels;
  }
  register_module("module_list", list);
  if (options_.head_bias_init) {
    for (const auto& h : cfg_.heads) {
      const auto conv = (*list)[static_cast<size_t>(h.cfg_index - 1)];
      auto* dc = dynamic_cast<DarknetConv*>(conv.get());
      if (dc && !dc->has_batch_norm()) init_head_bias(*dc->child_as<nn::Conv2d>("Conv2d"), h);
    }
  }
}

std::shared_ptr<nn::Module> Darknet::layer(int64_t i) const {
  RG_CHECK(i >= 0 && i < num_layers(), "Darknet: layer ", i, " out of range 0..", num_layers() - 1);
  return named_children()[0].second->named_children()[static_cast<size_t>(i)].second;
}

void Darknet::check_input(const Tensor& x) const {
  const int64_t ms = max_stride();
  RG_CHECK(x.dim() == 4 && x.size(1) == cfg_.net.channels, "Darknet(", cfg_.name, "): expected input (B, ",
           cfg_.net.channels, ", H, W), got ", shape_str(x.sizes()));
  RG_CHECK(x.size(2) % ms == 0 && x.size(3) % ms == 0 && x.size(2) > 0 && x.size(3) > 0, "Darknet(", cfg_.name,
           "): input height and width must be multiples of the network's largest stride ", ms, ", got ",
           x.size(2), "x", x.size(3), " (e.g. ", std::max<int64_t>(ms, x.size(2) / ms * ms), "x",
           std::max<int64_t>(ms, x.size(3) / ms * ms), ")");
}

std::vector<Tensor> Darknet::forward_heads(const Tensor& x) { return forward_heads(x, nullptr); }

std::vector<Tensor> Darknet::forward_heads(const Tensor& x, const LayerCallback& each_layer) {
  check_input(x);
  const auto& mods = named_children()[0].second->named_children();
  std::vector<Tensor> outs(cfg_.layers.size());
  std::vector<Tensor> heads;
  Tensor h = x;
  for (size_t i = 0; i < cfg_.layers.size(); ++i) {
    const DarknetLayer& l = cfg_.layers[i];
    switch (l.type) {
      case DarknetLayerType::Convolutional:
      case DarknetLayerType::MaxPool:
      case DarknetLayerType::Upsample: h = mods[i].second->forward(h); break;
      case DarknetLayerType::Shortcut:
        h = darknet_activation(add(h, outs[static_cast<size_t>(l.inputs[0])]), l.activation);
        break;
      case DarknetLayerType::Route: {
        std::vector<Tensor> parts;
        for (int64_t ref : l.inputs) {
          Tensor t = outs[static_cast<size_t>(ref)];
          if (l.route_groups > 1) {
            const int64_t c = t.size(1) / l.route_groups;
            t = t.narrow(1, l.group_id * c, c);
          }
          parts.push_back(t);
        }
        h = parts.size() == 1 ? parts[0] : cat(parts, 1);
        break;
      }
      case DarknetLayerType::Yolo: heads.push_back(h); break;
    }
    if (keep_[i]) outs[i] = h;
    if (each_layer) each_layer(static_cast<int64_t>(i), h);
  }
  return heads;
}

Tensor Darknet::forward(const Tensor& x) {
  const std::vector<Tensor> raw = forward_heads(x);
  RG_CHECK(!raw.empty(), "Darknet(", cfg_.name, "): forward needs at least one [yolo] layer; use forward_heads");
  std::vector<Tensor> rows;
  const int64_t b = x.size(0), no = 5 + cfg_.heads[0].num_classes;
  for (size_t i = 0; i < raw.size(); ++i) {
    const YoloHeadSpec& s = cfg_.heads[i];
    RG_CHECK(5 + s.num_classes == no, "Darknet(", cfg_.name, "): the flat forward needs every head to have the same ",
             "classes; head ", i, " has ", s.num_classes, ", head 0 ", no - 5, " (use forward_heads)");
    const int64_t gh = raw[i].size(2), gw = raw[i].size(3);
    // (B, A(5+C), H, W) -> (B, A, 5+C, H, W) -> (B, A, H, W, 5+C) -> (B, A*H*W, 5+C)
    rows.push_back(raw[i].view({b, s.num_anchors(), no, gh, gw}).permute({0, 1, 3, 4, 2}).reshape(
        {b, s.num_anchors() * gh * gw, no}));
  }
  return rows.size() == 1 ? rows[0] : cat(rows, 1);
}

std::string Darknet::extra_repr() const {
  return "cfg=" + cfg_.name + ", layers=" + std::to_string(cfg_.layers.size()) + ", heads=" +
         std::to_string(cfg_.heads.size()) +
         (cfg_.heads.empty() ? "" : ", classes=" + std::to_string(cfg_.heads[0].num_classes));
}

std::shared_ptr<Darknet> darknet_from_cfg(const std::string& name_or_path, const DarknetOptions& options) {
  return std::make_shared<Darknet>(load_darknet_cfg(name_or_path), options);
}

}  // namespace rg::models
