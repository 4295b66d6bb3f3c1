// safetensors reading and writing with full validation, and atomic file replacement.
#include "nn/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

#include "autograd/grad_mode.h"
#include "core/json.h"

namespace rg::nn {

const std::string* SafeTensors::meta(const std::string& key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

namespace {
void write_all(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    RG_CHECK(w > 0, "writing '", path, "' failed: ", std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

std::string dir_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

// Writes chunks produced by `emit` into a temporary file, then renames it into place.
template <typename Emit>
void atomic_write(const std::string& path, Emit&& emit) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  RG_CHECK(fd >= 0, "cannot create '", tmp, "': ", std::strerror(errno));
  try {
    emit([&](const char* p, size_t n) { write_all(fd, p, n, tmp); });
    RG_CHECK(::fsync(fd) == 0, "fsync of '", tmp, "' failed: ", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  RG_CHECK(::close(fd) == 0, "closing '", tmp, "' failed: ", std::strerror(errno));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    RG_THROW("renaming '", tmp, "' to '", path, "' failed: ", std::strerror(err));
  }
  const int dfd = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}
}  // namespace

void atomic_write_file(const std::string& path, const std::string& bytes) {
  atomic_write(path, [&](auto&& put) { put(bytes.data(), bytes.size()); });
}

void save_safetensors(const std::string& path, const StateDict& tensors, const Metadata& metadata) {
  NoGradGuard ng;
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  Json header = Json::object();
  if (!metadata.empty()) {
    Json m = Json::object();
    for (const auto& [k, v] : metadata) m.set(k, Json(v));
    header.set("__metadata__", m);
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    RG_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined");
    RG_CHECK(name != "__metadata__" && header.find(name) == nullptr, "save_safetensors: duplicate or reserved name '",
             name, "'");
    Tensor h = native::contiguous(native::to(t, kCPU, t.dtype()));
    Json entry = Json::object();
    entry.set("dtype", Json(dtype_short_name(t.dtype())));
    Json shape = Json::array();
    for (int64_t d : t.sizes()) shape.push_back(Json(d));
    entry.set("shape", shape);
    Json offs = Json::array();
    offs.push_back(Json(offset));
    offset += h.nbytes();
    offs.push_back(Json(offset));
    entry.set("data_offsets", offs);
    header.set(name, entry);
    host.push_back(std::move(h));
  }
  std::string hs = header.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned
  uint8_t len[8];
  const uint64_t n = hs.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  atomic_write(path, [&](auto&& put) {
    put(reinterpret_cast<const char*>(len), 8);
    put(hs.data(), hs.size());
    for (const Tensor& h : host) put(static_cast<const char*>(h.data_ptr()), h.nbytes());
  });
}

SafeTensors load_safetensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  RG_CHECK(f.good(), "cannot open checkpoint '", path, "': ", std::strerror(errno));
  const auto file_size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  auto corrupt = [&](const std::string& why) { RG_THROW("checkpoint '", path, "' is corrupt: ", why); };
  RG_CHECK(file_size >= 8, "checkpoint '", path, "' is truncated: ", file_size, " bytes, not even a header length");
  uint8_t len[8];
  f.read(reinterpret_cast<char*>(len), 8);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(len[i]) << (8 * i);
  RG_CHECK(hlen <= file_size - 8, "checkpoint '", path, "' is truncated: header length ", hlen,
           " exceeds the remaining ", file_size - 8, " bytes");
  if (hlen > (uint64_t{100} << 20)) corrupt("header length " + std::to_string(hlen) + " is implausibly large");
  std::string hs(hlen, '\0');
  f.read(hs.data(), static_cast<std::streamsize>(hlen));
  RG_CHECK(f.good(), "checkpoint '", path, "': reading the header failed");
  Json header;
  try {
    header = Json::parse(hs);
  } catch (const Error& e) {
    corrupt(std::string("bad JSON header: ") + e.what());
  }
  if (!header.is_object()) corrupt("the header is not a JSON object");
  const uint64_t data_len = file_size - 8 - hlen;

  SafeTensors out;
  struct Span {
    uint64_t b, e;
    size_t index;
  };
  std::vector<Span> spans;
  // rg::Json keeps every duplicate key of an object: a name given twice is refused (fuzz_safetensors).
  std::set<std::string> names, meta_keys;
  for (const auto& [name, entry] : header.as_object()) {
    if (!names.insert(name).second) corrupt("the header names '" + name + "' twice");
    if (name == "__metadata__") {
      if (!entry.is_object()) corrupt("__metadata__ is not an object");
      for (const auto& [k, v] : entry.as_object()) {
        if (!meta_keys.insert(k).second) corrupt("__metadata__ names '" + k + "' twice");
        if (!v.is_string()) corrupt("__metadata__ value for '" + k + "' is not a string");
        out.metadata.emplace_back(k, v.as_string());
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!entry.is_object()) corrupt(where + "entry is not an object");
    const Json* dt = entry.find("dtype");
    const Json* sh = entry.find("shape");
    const Json* of = entry.find("data_offsets");
    if (!dt || !sh || !of) corrupt(where + "needs dtype, shape and data_offsets");
    DType dtype;
    if (!dt->is_string() || !dtype_from_short_name(dt->as_string(), &dtype)) {
      corrupt(where + "unsupported dtype " + (dt->is_string() ? dt->as_string() : dt->dump()));
    }
    if (!sh->is_array()) corrupt(where + "shape is not an array");
    Shape shape;
    uint64_t numel = 1;
    for (const Json& d : sh->as_array()) {
      // 0x1p63: the cast below is defined (the first double past INT64_MAX is refused).
      if (!d.is_number() || d.as_double() < 0 || d.as_double() >= 0x1p63 ||
          d.as_double() != static_cast<double>(static_cast<int64_t>(d.as_double()))) {
        corrupt(where + "bad shape " + sh->dump());
      }
      shape.push_back(d.as_int());
      // A product past 2^63 would wrap to a small (even zero) byte count: refused before it can.
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d.as_int()), &numel) ||
          numel > static_cast<uint64_t>(INT64_MAX) / 8) {
        corrupt(where + "shape " + sh->dump() + " has more elements than 64-bit sizes hold");
      }
    }
    if (!of->is_array() || of->size() != 2 || !(*of)[0].is_number() || !(*of)[1].is_number()) {
      corrupt(where + "data_offsets must be [begin, end]");
    }
    const int64_t b = (*of)[0].as_int(), e = (*of)[1].as_int();
    if (b < 0 || e < b || static_cast<uint64_t>(e) > data_len) {
      corrupt(where + "data_offsets " + of->dump() + " outside the " + std::to_string(data_len) + "-byte data section");
    }
    if (static_cast<uint64_t>(e - b) != numel * dtype_size(dtype)) {
      corrupt(where + "data_offsets span " + std::to_string(e - b) + " bytes but shape " + shape_str(shape) + " of " +
              dtype_name(dtype) + " needs " + std::to_string(numel * dtype_size(dtype)));
    }
    spans.push_back({static_cast<uint64_t>(b), static_cast<uint64_t>(e), out.tensors.size()});
    out.tensors.emplace_back(name, empty(shape, TensorOptions(dtype)));
  }
  std::sort(spans.begin(), spans.end(), [](const Span& x, const Span& y) { return x.b != y.b ? x.b < y.b : x.e < y.e; });
  uint64_t cursor = 0;
  for (const Span& s : spans) {
    if (s.b != cursor) corrupt(s.b < cursor ? "tensor data overlap" : "hole in the data section");
    cursor = s.e;
  }
  if (cursor != data_len) corrupt("data section has " + std::to_string(data_len - cursor) + " trailing bytes");
  for (const Span& s : spans) {
    Tensor& t = out.tensors[s.index].second;
    f.seekg(static_cast<std::streamoff>(8 + hlen + s.b));
    f.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(s.e - s.b));
    RG_CHECK(f.good(), "checkpoint '", path, "': reading tensor '", out.tensors[s.index].first, "' failed");
  }
  return out;
}

}  // namespace rg::nn
