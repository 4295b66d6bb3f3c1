// Darknet .weights reading and writing (Note [Darknet weights format]): all-or-nothing loads with
// exact size checks, and atomic writes byte-identical to darknet's.
#include "models/darknet_weights.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <utility>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "nn/checkpoint.h"

namespace rg::models {

static_assert(std::endian::native == std::endian::little, "darknet .weights are little-endian; add byte swaps");

namespace {

// Layer i's tensors in file order (empty for layers without weights).
std::vector<Tensor> layer_tensors(const Darknet& model, int64_t i) {
  const auto m = model.layer(i);
  const auto* conv = dynamic_cast<const DarknetConv*>(m.get());
  if (!conv) return {};
  const auto c = conv->child("Conv2d");
  if (!conv->has_batch_norm()) return {c->param("bias"), c->param("weight")};
  // BatchNorm2d, or the SyncBatchNorm convert_sync_batchnorm put in its place: the same names.
  const auto bn = conv->child("BatchNorm2d");
  return {bn->param("bias"), bn->param("weight"), bn->buffer("running_mean"), bn->buffer("running_var"),
          c->param("weight")};
}

int64_t layers_up_to(const Darknet& model, int64_t cutoff) {
  RG_CHECK(cutoff <= model.num_layers(), "darknet weights: cutoff ", cutoff, " is past the model's ",
           model.num_layers(), " layers (", model.cfg().name, ")");
  return cutoff < 0 ? model.num_layers() : cutoff;
}

// Payload bytes of the first n layers.
int64_t payload_bytes(const Darknet& model, int64_t n) {
  int64_t bytes = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (const Tensor& t : layer_tensors(model, i)) bytes += t.numel() * 4;
  }
  return bytes;
}

template <typename T>
T read_le(const std::string& bytes, size_t at) {
  T v;
  std::memcpy(&v, bytes.data() + at, sizeof v);
  return v;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  RG_CHECK(in, "cannot open darknet weights '", path, "'");
  const std::streamoff size = in.tellg();
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  in.read(bytes.data(), size);
  RG_CHECK(in.gcount() == size, "darknet weights '", path, "': read ", in.gcount(), " of ", size, " bytes");
  return bytes;
}

// The size mismatch message: both counts, and the cutoff a prefix-sized file matches.
[[noreturn]] void size_error(const Darknet& model, const std::string& path, int64_t have, int64_t header, int64_t n) {
  const int64_t want = header + payload_bytes(model, n);
  std::string hint;
  if (have < want) {
    for (int64_t k = 1; k < n; ++k) {
      const int64_t at_k = header + payload_bytes(model, k);
      if (at_k == have) {  // the smallest such k (layers without weights add nothing)
        hint = "; it holds exactly the first " + std::to_string(k) + " layers (a partial file such as darknet53.conv.74): "
               "load it with cutoff " + std::to_string(k);
        break;
      }
    }
  }
  RG_THROW("darknet weights '", path, "' has ", have, " bytes but ", model.cfg().name, " (layers 0..", n - 1,
           ") needs ", want, " (a ", header, "-byte header + ", (want - header) / 4, " floats): the file is ",
           have < want ? "too short" : "too long", " for this cfg", hint, "; the model was not changed");
}

}  // namespace

int64_t darknet_weights_payload_bytes(const Darknet& model, int64_t cutoff) {
  return payload_bytes(model, layers_up_to(model, cutoff));
}

DarknetWeightsHeader load_darknet_weights(Darknet& model, const std::string& path, int64_t cutoff) {
  const int64_t n = layers_up_to(model, cutoff);
  const std::string bytes = read_file(path);
  const int64_t have = static_cast<int64_t>(bytes.size());
  RG_CHECK(have >= 12, "darknet weights '", path, "' has ", have, " bytes, fewer than the 12 of the version header");
  DarknetWeightsHeader h;
  h.major = read_le<int32_t>(bytes, 0);
  h.minor = read_le<int32_t>(bytes, 4);
  h.revision = read_le<int32_t>(bytes, 8);
  if (have < h.bytes()) size_error(model, path, have, h.bytes(), n);
  h.seen = h.seen_u64() ? read_le<uint64_t>(bytes, 12) : read_le<uint32_t>(bytes, 12);
  if (have != h.bytes() + payload_bytes(model, n)) size_error(model, path, have, h.bytes(), n);

  // Everything into host temporaries first; only then into the model (all or nothing).
  std::vector<std::pair<Tensor, Tensor>> staged;
  size_t at = static_cast<size_t>(h.bytes());
  for (int64_t i = 0; i < n; ++i) {
    for (const Tensor& t : layer_tensors(model, i)) {
      Tensor src = empty(t.sizes(), DType::f32);
      std::memcpy(src.data<float>(), bytes.data() + at, static_cast<size_t>(t.numel()) * 4);
      at += static_cast<size_t>(t.numel()) * 4;
      staged.emplace_back(t, std::move(src));
    }
  }
  NoGradGuard ng;
  for (auto& [dst, src] : staged) dst.copy_(src);
  model.set_seen(h.seen);
  return h;
}

void save_darknet_weights(const Darknet& model, const std::string& path, int64_t cutoff) {
  const int64_t n = layers_up_to(model, cutoff);
  const DarknetWeightsHeader h{.major = 0, .minor = 2, .revision = 5, .seen = model.seen()};
  std::string bytes;
  bytes.reserve(static_cast<size_t>(h.bytes() + payload_bytes(model, n)));
  auto put = [&](const void* p, size_t size) { bytes.append(static_cast<const char*>(p), size); };
  put(&h.major, 4);
  put(&h.minor, 4);
  put(&h.revision, 4);
  put(&h.seen, 8);
  NoGradGuard ng;
  for (int64_t i = 0; i < n; ++i) {
    for (const Tensor& t : layer_tensors(model, i)) {
      const Tensor host = native::contiguous(native::to(t, kCPU, DType::f32));
      put(host.data<float>(), static_cast<size_t>(host.numel()) * 4);
    }
  }
  nn::atomic_write_file(path, bytes);
}

}  // namespace rg::models
