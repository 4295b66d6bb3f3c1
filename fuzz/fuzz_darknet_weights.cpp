// Fuzzes load_darknet_weights (models/darknet_weights.cpp, Note [Darknet weights format]) against a
// small cfg (batch norm and bias convolutions, grouped, maxpool, route, shortcut, upsample, yolo), at
// every cutoff: a load either fills the model so that save_darknet_weights writes the input's tensor
// bytes back, or throws rg::Error naming the file and leaves every tensor of the model as it was.
#include <cstring>

#include "fuzz/fuzz_util.h"
#include "models/darknet.h"
#include "models/darknet_weights.h"

namespace {
constexpr const char* kCfg = R"([net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=6
groups=2
size=1
activation=linear

[convolutional]
batch_normalize=1
filters=6
size=3
pad=1
activation=mish

[shortcut]
from=-2

[upsample]
stride=2

[route]
layers=-1,0

[convolutional]
size=1
filters=21
activation=linear

[yolo]
mask=0,1,2
anchors=4,5, 8,9, 12,13
classes=2
num=3
)";

std::string state_bytes(const rg::models::Darknet& m) {
  std::string out;
  for (const auto& [name, t] : m.state_dict()) {
    const rg::Tensor c = t.contiguous();
    out.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
  }
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto model = std::make_shared<rg::models::Darknet>(rg::models::parse_darknet_cfg(kCfg, "small.cfg"));
  const std::string path = rg::fuzz::write_scratch("in.weights", data, size);
  const std::string out = rg::fuzz::scratch_dir() + "/out.weights";
  for (int64_t cutoff = -1; cutoff <= model->num_layers(); ++cutoff) {
    const std::string before = state_bytes(*model);
    rg::models::DarknetWeightsHeader h;
    if (!rg::fuzz::returns_or_rg_error([&] { h = rg::models::load_darknet_weights(*model, path, cutoff); }, path)) {
      RG_FUZZ_CHECK(state_bytes(*model) == before, "a failed load (cutoff ", cutoff, ") changed the model");
      continue;
    }
    RG_FUZZ_CHECK(model->seen() == h.seen, "seen");
    const auto payload = static_cast<size_t>(rg::models::darknet_weights_payload_bytes(*model, cutoff));
    RG_FUZZ_CHECK(size == static_cast<size_t>(h.bytes()) + payload, "loaded a ", size, "-byte file for ", h.bytes(),
                  " + ", payload, " bytes");
    rg::models::save_darknet_weights(*model, out, cutoff);
    const std::string saved = rg::fuzz::read_scratch(out);
    RG_FUZZ_CHECK(saved.size() == 20 + payload && std::memcmp(saved.data() + 20, data + h.bytes(), payload) == 0,
                  "save after load (cutoff ", cutoff, ") does not give the input's tensor bytes");
  }
  return 0;
}
