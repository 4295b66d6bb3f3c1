// safetensors checkpoints: a model's state_dict round trip in several dtypes, corrupt files
// refused by name with the model left unchanged, atomic writes, and a file read by plain Python.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/grad_mode.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn_util.h"

using namespace rg;
using namespace rg::nn;
using namespace rg::nntest;
namespace fs = std::filesystem;

namespace {

// A fresh directory under /tmp, removed when the test ends.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/rg_ckpt_XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

std::shared_ptr<Sequential> small_model() {
  auto m = std::make_shared<Sequential>();
  m->push_back(std::make_shared<Conv2d>(2, 3, 3, Conv2dOptions{.padding = 1}));
  m->push_back(std::make_shared<BatchNorm2d>(3));
  m->push_back(std::make_shared<Flatten>());
  m->push_back(std::make_shared<Linear>(12, 4));
  return m;
}

// Every state_dict value as doubles, to compare a model before and after a failed load.
std::vector<std::vector<double>> snapshot(const Module& m) {
  std::vector<std::vector<double>> out;
  for (const auto& [k, t] : m.state_dict()) out.push_back(vals(t));
  return out;
}

// Writes a file by hand (independently of save_safetensors): the 8-byte little-endian header
// length (or `len_override`), the header text, then `data`.
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               int64_t len_override = -1) {
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = len_override >= 0 ? static_cast<uint64_t>(len_override) : header.size();
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>((n >> (8 * i)) & 0xff));
  f << header << data;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The whole restore path a trainer runs: read and validate the file, then load into the model.
void restore(Module& m, const std::string& path) { m.load_state_dict(load_safetensors(path).tensors); }

}  // namespace

TEST_CASE("safetensors: a model's state_dict round trips, with bf16, f16, f64, int and bool tensors") {
  TempDir dir;
  manual_seed(21);
  auto model = small_model();
  // give the BN buffers non-default values, num_batches_tracked included
  model->train();
  (*model)(values({4, 2, 2, 2}, -1, 1, 3));
  StateDict sd = model->state_dict();
  sd.emplace_back("extra.bf16", native::to(values({3, 5}, -4, 4, 4), kCPU, DType::bf16));
  sd.emplace_back("extra.f16", native::to(values({7}, -100, 100, 5), kCPU, DType::f16));
  sd.emplace_back("extra.f64", values({2, 2}, -1, 1, 6, DType::f64));
  sd.emplace_back("extra.i32", from_vector<int32_t>({-5, 0, 7}));
  sd.emplace_back("extra.i64", from_vector<int64_t>({int64_t{1} << 40, -3}, {2, 1}));
  sd.emplace_back("extra.u8", from_vector<uint8_t>({0, 255, 17}));
  sd.emplace_back("extra.empty", zeros({0, 3}));
  sd.emplace_back("extra.noncontig", values({4, 6}, -1, 1, 7).t());
  const Metadata meta{{"epoch", "3"}, {"format", "pt"}};
  const std::string path = dir.file("model.safetensors");
  save_safetensors(path, sd, meta);

  const SafeTensors loaded = load_safetensors(path);
  REQUIRE(loaded.tensors.size() == sd.size());
  for (size_t i = 0; i < sd.size(); ++i) {
    const auto& [name, t] = sd[i];
    CAPTURE(name);
    CHECK(loaded.tensors[i].first == name);  // file order is save order
    const Tensor& u = loaded.tensors[i].second;
    CHECK(u.dtype() == t.dtype());
    CHECK(u.sizes() == t.sizes());
    CHECK(u.is_cpu());
    CHECK(vals(u) == vals(t));  // bit-exact values in every dtype
  }
  CHECK(find(loaded.tensors, "3.weight") != nullptr);
  CHECK(find(loaded.tensors, "1.num_batches_tracked")->dtype() == DType::i64);
  CHECK(find(loaded.tensors, "1.num_batches_tracked")->item() == 1);
  REQUIRE(loaded.meta("epoch") != nullptr);
  CHECK(*loaded.meta("epoch") == "3");
  CHECK(*loaded.meta("format") == "pt");
  CHECK(loaded.meta("missing") == nullptr);

  // into a fresh model: identical outputs
  manual_seed(99);
  auto fresh = small_model();
  fresh->load_state_dict(load_safetensors(path).tensors, /*strict=*/false);  // the extras are unexpected
  CHECK(snapshot(*fresh) == snapshot(*model));
  CHECK_THROWS_AS(restore(*fresh, path), Error);  // strict refuses them
  StateDict only_model(sd.begin(), sd.begin() + static_cast<long>(model->state_dict().size()));
  save_safetensors(dir.file("m.safetensors"), only_model);
  manual_seed(98);
  auto fresh2 = small_model();
  restore(*fresh2, dir.file("m.safetensors"));
  fresh2->eval();
  model->eval();
  Tensor x = values({2, 2, 2, 2}, -1, 1, 8);
  CHECK(vals((*fresh2)(x)) == vals((*model)(x)));
  // bf16 and f16 models save in their own dtype
  model->to(DType::bf16);
  save_safetensors(dir.file("bf16.safetensors"), model->state_dict());
  const auto lb = load_safetensors(dir.file("bf16.safetensors"));
  CHECK(find(lb.tensors, "0.weight")->dtype() == DType::bf16);
  CHECK(find(lb.tensors, "1.num_batches_tracked")->dtype() == DType::i64);
  CHECK(vals(*find(lb.tensors, "0.weight")) == vals(model->child("0")->param("weight")));
}

TEST_CASE("safetensors: many empty tensors sharing offsets with their neighbours load back") {
  // An empty tensor's span [o, o) starts where the next tensor starts: the validation must not
  // call that an overlap, whatever order it sorts equal offsets in.
  TempDir dir;
  StateDict sd;
  for (int i = 0; i < 40; ++i) {
    std::string name = "t";
    name += std::to_string(i);
    sd.emplace_back(name, i % 2 ? zeros({0}) : full({3}, static_cast<double>(i)));
  }
  save_safetensors(dir.file("e.st"), sd);
  const SafeTensors back = load_safetensors(dir.file("e.st"));
  REQUIRE(back.tensors.size() == 40);
  for (int i = 0; i < 40; ++i) {
    CHECK(back.tensors[static_cast<size_t>(i)].second.numel() == (i % 2 ? 0 : 3));
    if (i % 2 == 0) CHECK(vals(back.tensors[static_cast<size_t>(i)].second)[2] == i);
  }
}

TEST_CASE("safetensors: corrupt files are refused by name and the model is left unchanged") {
  TempDir dir;
  Linear model(3, 2);
  const auto before = snapshot(model);
  // a valid file for this model: weight (2, 3) f32 = 24 bytes, then bias (2) f32 = 8 bytes
  const std::string data(32, '\x01');
  const std::string good =
      R"({"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}})";
  write_raw(dir.file("good.st"), good, data);
  {
    Linear ok(3, 2);
    restore(ok, dir.file("good.st"));  // the baseline: this one loads
    const float expect = [] {
      float f;
      const uint32_t bits = 0x01010101u;
      std::memcpy(&f, &bits, 4);
      return f;
    }();
    CHECK(vals(ok.weight())[0] == static_cast<double>(expect));
  }

  struct Bad {
    const char* name;
    std::string header, data;
    int64_t len_override;
    std::vector<std::string> expect;  // substrings of the error
  };
  const std::vector<Bad> cases = {
      {"truncated data", good, data.substr(0, 20), -1, {"corrupt", "data_offsets"}},
      {"header length past EOF", good, data, 5000, {"truncated", "header length 5000"}},
      {"bad JSON", R"({"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)", data, -1, {"corrupt", "JSON"}},
      {"not an object", "[1,2]", data, -1, {"corrupt", "not a JSON object"}},
      {"unknown dtype",
       R"({"weight":{"dtype":"F8_E5M2","shape":[2,3],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}})",
       data, -1, {"corrupt", "tensor 'weight'", "unsupported dtype F8_E5M2"}},
      {"offsets out of range",
       R"({"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[32,40]}})",
       data, -1, {"corrupt", "tensor 'bias'", "outside"}},
      {"overlapping",
       R"({"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})",
       data.substr(0, 24), -1, {"corrupt", "overlap"}},
      {"hole",
       R"({"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[32,40]}})",
       data + std::string(8, '\0'), -1, {"corrupt", "hole"}},
      {"span does not match the shape",
       R"({"weight":{"dtype":"F32","shape":[2,4],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}})",
       data, -1, {"corrupt", "tensor 'weight'", "needs 32"}},
      {"negative dim",
       R"({"weight":{"dtype":"F32","shape":[-2,3],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}})",
       data, -1, {"corrupt", "tensor 'weight'", "bad shape"}},
      {"missing field", R"({"weight":{"dtype":"F32","shape":[2,3]}})", data, -1, {"corrupt", "data_offsets"}},
      {"trailing bytes", good, data + "xyz", -1, {"corrupt", "trailing"}},
      {"shorter than a length", "", "", -2, {"truncated"}},
      // found by fuzz_safetensors: rg::Json keeps both entries of a duplicated key
      {"duplicate name",
       R"({"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[32,40]}})",
       data + std::string(8, '\0'), -1, {"corrupt", "names 'bias' twice"}},
      {"duplicate metadata key", R"({"__metadata__":{"a":"1","a":"2"},)" + good.substr(1), data, -1,
       {"corrupt", "__metadata__ names 'a' twice"}},
      // 2^32 * 2^32 elements wrapped to 0 bytes, matching an empty span; 1e300 overflowed the cast to int64
      {"element count past 64 bits",
       R"({"weight":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       data.substr(0, 8), -1, {"corrupt", "tensor 'weight'", "more elements than 64-bit sizes hold"}},
      {"dim past int64",
       R"({"weight":{"dtype":"F32","shape":[1e300],"data_offsets":[0,0]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       data.substr(0, 8), -1, {"corrupt", "tensor 'weight'", "bad shape"}},
  };
  for (const Bad& c : cases) {
    CAPTURE(c.name);
    const std::string path = dir.file("bad.st");
    if (c.len_override == -2) {
      std::ofstream(path, std::ios::binary) << "abc";
    } else {
      write_raw(path, c.header, c.data, c.len_override);
    }
    const std::string e = error_of([&] { restore(model, path); });
    CAPTURE(e);
    CHECK(contains(e, "checkpoint '" + path + "'"));
    for (const std::string& part : c.expect) CHECK(contains(e, part));
    CHECK(snapshot(model) == before);
  }

  // a well-formed file of the wrong shape for the model: refused by load_state_dict, unchanged
  Linear other(3, 5);
  save_safetensors(dir.file("other.st"), other.state_dict());
  const std::string e = error_of([&] { restore(model, dir.file("other.st")); });
  CHECK(contains(e, "size mismatch for weight"));
  CHECK(contains(e, "size mismatch for bias"));
  CHECK(snapshot(model) == before);
  // a missing file is named too
  CHECK(contains(error_of([&] { load_safetensors(dir.file("nope.st")); }), "nope.st"));
}

TEST_CASE("safetensors: writes are atomic and leave no temporary file") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  Linear a(4, 3), b(4, 3);
  save_safetensors(path, a.state_dict());
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
  const std::string first = read_file(path);
  save_safetensors(path, b.state_dict());  // replaces the file whole
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
  const std::string second = read_file(path);
  CHECK(second.size() == first.size());
  CHECK(second != first);
  Linear c(4, 3);
  restore(c, path);
  CHECK(vals(c.weight()) == vals(b.weight()));

  // a failed save leaves the previous file intact and nothing else behind
  StateDict bad = a.state_dict();
  bad.emplace_back("weight", zeros({1}));  // duplicate name
  CHECK_THROWS_AS(save_safetensors(path, bad), Error);
  StateDict undef = a.state_dict();
  undef.emplace_back("x", Tensor());
  CHECK_THROWS_AS(save_safetensors(path, undef), Error);
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
  CHECK(read_file(path) == second);
  CHECK_THROWS_AS(save_safetensors(dir.file("no/such/dir/x.st"), a.state_dict()), Error);
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});

  atomic_write_file(dir.file("side.json"), "{\"epoch\": 4}");
  CHECK(read_file(dir.file("side.json")) == "{\"epoch\": 4}");
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors", "side.json"});
}

TEST_CASE("safetensors: plain Python (json + struct) reads our file" * doctest::test_suite("python")) {
  RG_SKIP_IF(std::system("python3 -c 'import json, struct' >/dev/null 2>&1") != 0 ? "python3 not available" : "");
  TempDir dir;
  Sequential model;
  model.push_back(std::make_shared<Linear>(3, 2));
  model.push_back(std::make_shared<BatchNorm2d>(2));
  StateDict sd = model.state_dict();
  sd.emplace_back("half", native::to(from_vector<float>({1.5f, -2.0f}), kCPU, DType::bf16));
  const std::string path = dir.file("py.safetensors");
  save_safetensors(path, sd, {{"note", "hello"}});
  char w01[64];
  std::snprintf(w01, sizeof(w01), "%.9g", vals(model.child("0")->param("weight"))[1]);

  // Python checks names, dtypes, shapes, offsets, the metadata and two values; prints OK.
  const std::string script =
      "import json, struct, sys\n"
      "b = open(sys.argv[1], 'rb').read()\n"
      "n = struct.unpack('<Q', b[:8])[0]\n"
      "h = json.loads(b[8:8 + n])\n"
      "d = b[8 + n:]\n"
      "assert h['__metadata__'] == {'note': 'hello'}, h['__metadata__']\n"
      "names = [k for k in h if k != '__metadata__']\n"
      "assert names == ['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var',"
      " '1.num_batches_tracked', 'half'], names\n"
      "w = h['0.weight']\n"
      "assert w['dtype'] == 'F32' and w['shape'] == [2, 3], w\n"
      "assert h['1.num_batches_tracked']['dtype'] == 'I64' and h['1.num_batches_tracked']['shape'] == [], h\n"
      "assert h['half']['dtype'] == 'BF16' and h['half']['shape'] == [2]\n"
      "s, e = w['data_offsets']\n"
      "assert e - s == 24\n"
      "v = struct.unpack('<6f', d[s:e])[1]\n"
      "assert abs(v - float(sys.argv[2])) <= 1e-6 * max(1.0, abs(v)), (v, sys.argv[2])\n"
      "rv = h['1.running_var']['data_offsets']\n"
      "assert struct.unpack('<2f', d[rv[0]:rv[1]]) == (1.0, 1.0)\n"
      "hs, he = h['half']['data_offsets']\n"
      "bits = struct.unpack('<2H', d[hs:he])\n"
      "vals = [struct.unpack('<f', struct.pack('<I', x << 16))[0] for x in bits]\n"
      "assert vals == [1.5, -2.0], vals\n"
      "ends = sorted(x['data_offsets'] for k, x in h.items() if k != '__metadata__')\n"
      "assert ends[0][0] == 0 and ends[-1][1] == len(d)\n"
      "print('OK')\n";
  const std::string script_path = dir.file("check.py");
  std::ofstream(script_path) << script;
  const std::string cmd = "python3 " + script_path + " " + path + " " + w01 + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), p)) out += buf;
  const int rc = ::pclose(p);
  CAPTURE(out);
  CHECK(rc == 0);
  CHECK(out == "OK\n");
}
