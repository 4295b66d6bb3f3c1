// Darknet .weights: the published file sizes, byte-exact writing (assembled here from the format's
// description), round trips, both `seen` header variants, truncated and overlong files (both byte
// counts named, the model untouched), and partial loads with a cutoff.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "autograd/grad_mode.h"
#include "cfg_oracle.h"
#include "models/darknet_weights.h"
#include "test_util.h"

using namespace rg;
using namespace rg::models;
using rg::test::contains;
using rg::test::error_of;
namespace fs = std::filesystem;

namespace {

struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() / ("rg_weights_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string operator/(const std::string& f) const { return (dir / f).string(); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

std::shared_ptr<Darknet> tiny(uint64_t seed) {
  manual_seed(seed);
  auto m = darknet_from_cfg("yolov3-tiny.cfg", DarknetOptions{.num_classes = 2});
  // Non-trivial running statistics, so that a load that skipped them would show.
  NoGradGuard ng;
  for (auto& [name, b] : m->named_buffers()) {
    if (b.dtype() == DType::f32) b.copy_(test::uniform(b.sizes(), 0.5, 2.0, DType::f32, seed + b.numel()));
  }
  return m;
}

std::string read_bytes(const std::string& path) { return test::oracle::read_text(path); }
void write_bytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

template <typename T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void put_tensor(std::string& s, const Tensor& t) {
  for (float v : t.contiguous().to_vector<float>()) put(s, v);
}

// The payload as the format describes it, from the cfg text (the tests' reading) and the model's tensors:
// per convolution biases, [scales, rolling mean, rolling variance], weights.
std::string expected_payload(const Darknet& m, const std::string& cfg_name, int64_t cutoff) {
  const auto layers = test::oracle::layers(test::oracle::read_text(find_darknet_cfg(cfg_name)), 416, 416);
  std::string s;
  for (size_t i = 0; i < layers.size() && static_cast<int64_t>(i) < cutoff; ++i) {
    if (layers[i].type != "convolutional") continue;
    const std::string p = "module_list." + std::to_string(i) + ".";
    const nn::StateDict sd = m.state_dict();
    auto get = [&](const std::string& k) { return *nn::find(sd, p + k); };
    if (layers[i].bn) {
      for (const char* k : {"BatchNorm2d.bias", "BatchNorm2d.weight", "BatchNorm2d.running_mean", "BatchNorm2d.running_var"}) {
        put_tensor(s, get(k));
      }
    } else {
      put_tensor(s, get("Conv2d.bias"));
    }
    put_tensor(s, get("Conv2d.weight"));
  }
  return s;
}

// Every state entry but num_batches_tracked (which darknet does not store), as doubles.
std::vector<std::vector<double>> values(const Darknet& m) {
  std::vector<std::vector<double>> v;
  for (const auto& [k, t] : m.state_dict()) {
    if (k.find("num_batches_tracked") == std::string::npos) v.push_back(t.to_vector<double>());
  }
  return v;
}

}  // namespace

TEST_CASE("the published darknet file sizes: yolov3.weights, yolov3-tiny.weights, darknet53.conv.74") {
  // Sizes of the files pjreddie publishes, header (20 bytes) included.
  manual_seed(1);
  auto v3 = darknet_from_cfg("yolov3.cfg");
  CHECK(20 + darknet_weights_payload_bytes(*v3) == 248007048);
  CHECK(20 + darknet_weights_payload_bytes(*v3, 74) == 162482580);  // darknet53.conv.74: layers 0..73
  auto t = darknet_from_cfg("yolov3-tiny.cfg");
  CHECK(20 + darknet_weights_payload_bytes(*t) == 35434956);
}

TEST_CASE("save writes darknet's bytes (0.2.5 header, u64 seen, BN order), atomically; load restores the model") {
  Scratch dir;
  auto a = tiny(1);
  a->set_seen(123456789012ull);
  const std::string path = dir / "a.weights";
  save_darknet_weights(*a, path);
  std::string want;
  put<int32_t>(want, 0);
  put<int32_t>(want, 2);
  put<int32_t>(want, 5);
  put<uint64_t>(want, 123456789012ull);
  want += expected_payload(*a, "yolov3-tiny.cfg", 1000);
  const std::string got = read_bytes(path);
  CHECK(got.size() == want.size());
  CHECK(got == want);
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.dir)) ++files;
  CHECK(files == 1);  // no temporary left behind

  auto b = tiny(2);
  REQUIRE(values(*a) != values(*b));
  const DarknetWeightsHeader h = load_darknet_weights(*b, path);
  CHECK(h.major == 0);
  CHECK(h.minor == 2);
  CHECK(h.revision == 5);
  CHECK(h.seen == 123456789012ull);
  CHECK(b->seen() == 123456789012ull);
  CHECK(values(*a) == values(*b));
  a->eval();
  b->eval();
  NoGradGuard ng;
  const Tensor x = test::uniform({1, 3, 64, 64}, 0, 1);
  CHECK(a->forward(x).to_vector<float>() == b->forward(x).to_vector<float>());
  // A model in another dtype writes the same bytes and loads the same values.
  b->to(DType::f64);
  save_darknet_weights(*b, dir / "b.weights");
  CHECK(read_bytes(dir / "b.weights") == want);
}

TEST_CASE("header variants: u32 `seen` before version 0.2 (and for major or minor >= 1000), u64 from 0.2") {
  Scratch dir;
  auto a = tiny(1);
  const std::string payload = expected_payload(*a, "yolov3-tiny.cfg", 1000);
  struct V {
    int32_t major, minor, revision;
    bool u64;
  };
  // The last three overflowed major * 10 in 32 bits (fuzz_darknet_weights, UBSan): darknet's test done in
  // 64 bits. Evaluated at compile time too, where an overflow does not compile.
  static_assert(!DarknetWeightsHeader{.major = 436211200, .minor = 0}.seen_u64());
  static_assert(!DarknetWeightsHeader{.major = INT32_MIN, .minor = 999}.seen_u64());
  for (const V v : {V{0, 1, 0, false}, V{0, 2, 0, true}, V{1, 0, 0, true}, V{1000, 1, 0, false}, V{0, 1000, 0, false},
                    V{436211200, 0, 0, false}, V{INT32_MIN, 999, 0, false}, V{INT32_MAX, 0, 0, false}}) {
    CAPTURE(v.major);
    CAPTURE(v.minor);
    std::string f;
    put(f, v.major);
    put(f, v.minor);
    put(f, v.revision);
    if (v.u64) {
      put<uint64_t>(f, 5000000000ull);
    } else {
      put<uint32_t>(f, 4000000000u);
    }
    write_bytes(dir / "v.weights", f + payload);
    auto b = tiny(2);
    const DarknetWeightsHeader h = load_darknet_weights(*b, dir / "v.weights");
    CHECK(h.seen_u64() == v.u64);
    CHECK(b->seen() == (v.u64 ? 5000000000ull : 4000000000ull));
    CHECK(values(*a) == values(*b));
  }
}

TEST_CASE("a truncated or overlong file is an error naming both byte counts, and the model is left untouched") {
  Scratch dir;
  auto a = tiny(1);
  save_darknet_weights(*a, dir / "a.weights");
  const std::string full = read_bytes(dir / "a.weights");
  auto b = tiny(2);
  b->set_seen(7);
  const auto before = values(*b);
  const std::string n = std::to_string(full.size());

  write_bytes(dir / "short.weights", full.substr(0, full.size() - 4));
  std::string e = error_of([&] { load_darknet_weights(*b, dir / "short.weights"); });
  CHECK(contains(e, "has " + std::to_string(full.size() - 4) + " bytes but yolov3-tiny.cfg (layers 0..23) needs " + n));
  CHECK(contains(e, "too short"));
  CHECK(contains(e, "the model was not changed"));
  write_bytes(dir / "long.weights", full + std::string(4, '\0'));
  e = error_of([&] { load_darknet_weights(*b, dir / "long.weights"); });
  CHECK(contains(e, "has " + std::to_string(full.size() + 4) + " bytes but yolov3-tiny.cfg (layers 0..23) needs " + n));
  CHECK(contains(e, "too long"));
  write_bytes(dir / "header.weights", full.substr(0, 10));
  CHECK(contains(error_of([&] { load_darknet_weights(*b, dir / "header.weights"); }),
                 "has 10 bytes, fewer than the 12 of the version header"));
  write_bytes(dir / "seen.weights", full.substr(0, 16));  // version 0.2.5 says u64 seen: 20 bytes needed
  CHECK(contains(error_of([&] { load_darknet_weights(*b, dir / "seen.weights"); }), "has 16 bytes but"));
  CHECK(contains(error_of([&] { load_darknet_weights(*b, dir / "none.weights"); }), "cannot open darknet weights"));
  CHECK(values(*b) == before);
  CHECK(b->seen() == 7);
}

TEST_CASE("partial files: the first N layers written and loaded with a cutoff; a hint when the cutoff is missing") {
  Scratch dir;
  auto a = tiny(1);
  save_darknet_weights(*a, dir / "part.weights", 13);  // layers 0..12, as `darknet partial ... 13`
  std::string want(20, '\0');
  want += expected_payload(*a, "yolov3-tiny.cfg", 13);
  const std::string got = read_bytes(dir / "part.weights");
  CHECK(got.size() == want.size());
  CHECK(got.substr(20) == want.substr(20));

  auto b = tiny(2);
  const auto b_before = b->state_dict();
  std::vector<std::vector<double>> b_old;
  for (const auto& [k, t] : b_before) b_old.push_back(t.to_vector<double>());
  const std::string e = error_of([&] { load_darknet_weights(*b, dir / "part.weights"); });
  CHECK(contains(e, "too short"));
  CHECK(contains(e, "it holds exactly the first 13 layers"));
  CHECK(contains(e, "load it with cutoff 13"));
  load_darknet_weights(*b, dir / "part.weights", 13);
  const auto sa = a->state_dict(), sb = b->state_dict();
  for (size_t i = 0; i < sb.size(); ++i) {
    const std::string& k = sb[i].first;
    CAPTURE(k);
    if (k.find("num_batches_tracked") != std::string::npos) continue;
    const int layer = std::stoi(k.substr(std::strlen("module_list.")));
    if (layer < 13) {
      CHECK(sb[i].second.to_vector<double>() == sa[i].second.to_vector<double>());
    } else {
      CHECK(sb[i].second.to_vector<double>() == b_old[i]);
    }
  }
  CHECK(contains(error_of([&] { load_darknet_weights(*b, dir / "part.weights", 99); }), "cutoff 99 is past the model's 24"));
}
