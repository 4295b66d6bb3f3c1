// View ops share storage and compute strides as PyTorch does; reshape copies only when it must.
#include "test_util.h"

using namespace rg;

TEST_CASE("view of a contiguous tensor shares storage and has contiguous strides") {
  Tensor x = arange(24.0);
  Tensor v = native::view(x, {2, 3, 4});
  CHECK(v.sizes() == Shape{2, 3, 4});
  CHECK(v.strides() == Shape{12, 4, 1});
  CHECK(v.data_ptr() == x.data_ptr());
  Tensor w = native::view(x, {4, -1});
  CHECK(w.sizes() == Shape{4, 6});
}

TEST_CASE("view refuses a transposed tensor; reshape copies it") {
  Tensor x = native::view(arange(6.0), {2, 3});
  Tensor t = native::transpose(x, 0, 1);  // (3, 2), strides (1, 3)
  CHECK(t.strides() == Shape{1, 3});
  CHECK_THROWS_AS(native::view(t, {6}), rg::Error);
  Tensor r = native::reshape(t, {6});
  CHECK(r.data_ptr() != x.data_ptr());
  // transposed order: 0 3 1 4 2 5, worked out by hand
  CHECK(r.to_vector<double>() == std::vector<double>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("view splits and merges dims across a slice when strides allow") {
  Tensor x = native::view(arange(24.0), {4, 6});
  Tensor s = native::slice(x, 0, 1, 3);  // rows 1..2: (2, 6) with strides (6, 1)
  Tensor v = native::view(s, {2, 2, 3});
  CHECK(v.strides() == Shape{6, 3, 1});
  CHECK(v.storage_offset() == 6);
  Tensor c = native::slice(x, 1, 0, 3);  // (4, 3) strides (6, 1): cannot flatten
  CHECK_THROWS_AS(native::view(c, {12}), rg::Error);
}

TEST_CASE("slice with step, narrow, select and expand") {
  Tensor x = arange(10.0);
  Tensor s = native::slice(x, 0, 1, 10, 3);  // 1, 4, 7
  CHECK(s.to_vector<double>() == std::vector<double>{1, 4, 7});
  Tensor n = native::narrow(x, 0, -3, 2);  // 7, 8
  CHECK(n.to_vector<double>() == std::vector<double>{7, 8});
  Tensor m = native::view(x, {2, 5});
  CHECK(native::select(m, 1, -1).to_vector<double>() == std::vector<double>{4, 9});
  Tensor e = native::expand(native::view(arange(3.0), {3, 1}), {2, 3, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(native::contiguous(e).to_vector<double>()[5] == 1.0);  // element (0, 1, 1)
  CHECK_THROWS_AS(native::expand(arange(3.0), {4}), rg::Error);
  CHECK_THROWS_AS(native::narrow(x, 0, 8, 5), rg::Error);
}

TEST_CASE("permute, squeeze, unsqueeze, flatten") {
  Tensor x = zeros({2, 1, 3});
  CHECK(native::permute(x, {2, 0, 1}).sizes() == Shape{3, 2, 1});
  CHECK(native::squeeze(x, 1).sizes() == Shape{2, 3});
  CHECK(native::unsqueeze(x, -1).sizes() == Shape{2, 1, 3, 1});
  CHECK(native::flatten(x, 1).sizes() == Shape{2, 3});
  CHECK_THROWS_AS(native::permute(x, {0, 0, 1}), rg::Error);
}

TEST_CASE("errors name the op, the shapes and the device") {
  try {
    native::view(arange(6.0), {4, -1});
    FAIL("expected an error");
  } catch (const rg::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("view") != std::string::npos);
    CHECK(msg.find("[4, -1]") != std::string::npos);
    CHECK(msg.find("float32[6] cpu") != std::string::npos);
    CHECK(msg.find("native_view.cpp:") != std::string::npos);
    CHECK(e.op() == "view");
  }
}
