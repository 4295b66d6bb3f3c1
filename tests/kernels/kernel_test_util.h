// Helpers shared by the CUDA kernel tests (label gpu): the device, copies between devices that keep
// the dtype, inputs in any dtype, widened tolerances, and the input views every kernel must take.
#pragma once

#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/native.h"
#include "test_util.h"

namespace rg::ktest {

inline const Device kGPU = Device::cuda(0);
inline const std::vector<DType> kAllDTypes = test::all_dtypes();

inline Tensor to_gpu(const Tensor& t) { return native::to(t, kGPU, t.dtype(), true); }
inline Tensor to_cpu(const Tensor& t) { return native::to(t, kCPU, t.dtype(), true); }

// tol_for(t) with atol and rtol times k.
inline test::Tol loose(DType t, double k) {
  const test::Tol b = test::tol_for(t);
  return {b.atol * k, b.rtol * k};
}

// Values in [lo, hi) on the CPU in dtype dt. Integer dtypes truncate (u8 clamps lo to 0, bool is 0/1);
// `coarse` floats are whole numbers, so comparisons meet equal elements.
inline Tensor values(const Shape& shape, DType dt, double lo, double hi, uint64_t seed, bool coarse = false) {
  if (dt == DType::b8) return native::to(test::uniform(shape, 0.0, 2.0, DType::i64, seed), kCPU, DType::b8);
  if (dt == DType::u8) lo = std::max(lo, 0.0);
  if (!is_floating(dt) || coarse) {
    return native::to(test::uniform(shape, lo, hi, DType::i64, seed), kCPU, dt);
  }
  return test::uniform(shape, lo, hi, dt, seed);
}

// A view of a base tensor: how big the base is and how to cut the view out of it. The same recipe
// applied to a CPU base and to its GPU copy gives the same logical values with the same strides.
struct View {
  std::string name;
  Shape base;
  std::function<Tensor(const Tensor&)> make;
};

// Contiguous; contiguous but one element off (no 16-byte packs); every other element of a wider
// last dim; last two dims transposed; and, for inputs only, broadcast along the first dim (stride 0).
inline std::vector<View> views_of(const Shape& s, bool inputs) {
  std::vector<View> v;
  const int64_t nd = static_cast<int64_t>(s.size());
  const int64_t numel = shape_numel(s);
  v.push_back({"contiguous", s, [](const Tensor& b) { return b; }});
  v.push_back({"misaligned", {numel + 1}, [s, numel](const Tensor& b) {
                 return native::view(native::narrow(b, 0, 1, numel), s);
               }});
  if (nd >= 1) {
    Shape wide = s;
    wide.back() = 2 * s.back() + 1;
    v.push_back({"step2", wide, [nd, s](const Tensor& b) {
                   return native::slice(b, nd - 1, 1, 2 * s.back() + 1, 2);
                 }});
  }
  if (nd >= 2) {
    Shape t = s;
    std::swap(t[nd - 1], t[nd - 2]);
    v.push_back({"transposed", t, [nd](const Tensor& b) { return native::transpose(b, nd - 2, nd - 1); }});
  }
  if (inputs && nd >= 1 && s[0] > 1) {
    Shape one = s;
    one[0] = 1;
    v.push_back({"broadcast", one, [s](const Tensor& b) { return native::expand(b, s); }});
  }
  return v;
}

}  // namespace rg::ktest
