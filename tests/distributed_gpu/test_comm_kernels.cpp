// The CUDA ring's elementwise kernels (cuda_kernels/comm.cu) against host arithmetic written from
// Note [Ring reduction arithmetic]: every dtype, sum/max/avg, aligned and misaligned pointers,
// one and two destinations, element counts around the 16-byte vector width.
#include <doctest/doctest.h>

#include <iterator>

#include "distributed_gpu/gpu_checks.h"

#ifdef RINGGRAD_WITH_CUDA
#include "cuda_kernels/comm.h"

namespace rg::test::gpu {
namespace {

// Device buffer of `n` T starting `offset` elements into a fresh allocation.
struct DevBuf {
  Tensor base;
  void* ptr;
  DevBuf(int64_t n, DType t, int64_t offset) {
    base = rg::empty(Shape{n + offset + 1}, TensorOptions(t).device(Device::cuda(0)));
    ptr = static_cast<char*>(base.data_ptr()) + offset * static_cast<int64_t>(dtype_size(t));
  }
};

template <typename T> void put(void* dst, const std::vector<T>& v) {
  cuda::memcpy(dst, v.data(), v.size() * sizeof(T), cuda::CopyKind::HostToDevice);
}
template <typename T> std::vector<T> get(const void* src, size_t n) {
  std::vector<T> v(n);
  cuda::memcpy(v.data(), src, n * sizeof(T), cuda::CopyKind::DeviceToHost);
  return v;
}

template <typename T>
std::string check_reduce(int64_t n, ReduceOp op, int divisor, int64_t off_a, int64_t off_b, int64_t off_y,
                         int64_t off_z, bool second, bool in_place, uint64_t seed) {
  const DType t = DTypeOf<T>::value;
  const std::vector<T> a = make_input<T>(seed, 0, n, false), b = make_input<T>(seed, 1, n, false);
  std::vector<T> want(static_cast<size_t>(n));
  for (size_t i = 0; i < want.size(); ++i) want[i] = host_step<T>(a[i], b[i], op, divisor);
  DevBuf da(n, t, off_a), db(n, t, off_b), dy(n, t, off_y), dz(n, t, off_z);
  put(da.ptr, a);
  put(db.ptr, b);
  const cuda::CommOp cop = op == ReduceOp::Max ? cuda::CommOp::Max : cuda::CommOp::Sum;
  void* stream = cuda::current_stream(0).handle;
  void* y = in_place ? da.ptr : dy.ptr;
  if (in_place && divisor == 1 && !second) {
    cuda::ring_reduce_cuda(y, db.ptr, n, t, cop, stream);
  } else {
    cuda::ring_reduce_out_cuda(y, second ? dz.ptr : nullptr, da.ptr, db.ptr, n, t, cop, divisor, stream);
  }
  const std::string what = std::string("ring_reduce ") + dtype_name(t) + "[" + std::to_string(n) + "] " +
                           dist::reduce_op_name(op) + " /" + std::to_string(divisor) + " offsets " +
                           std::to_string(off_a) + "," + std::to_string(off_b) + "," + std::to_string(off_y) +
                           (in_place ? " in place" : "") + (second ? " +second at " + std::to_string(off_z) : "");
  std::string e = compare(get<T>(y, static_cast<size_t>(n)), want, Expect::Bitwise, what);
  if (e.empty() && second) e = compare(get<T>(dz.ptr, static_cast<size_t>(n)), want, Expect::Bitwise, what + " (y2)");
  if (e.empty() && !in_place) e = compare(get<T>(db.ptr, static_cast<size_t>(n)), b, Expect::Bitwise, what + " (b kept)");
  return e;
}

std::string check_reduce_any(DType t, int64_t n, ReduceOp op, int divisor, const int64_t (&off)[4], bool second,
                             bool in_place, uint64_t seed) {
  RG_GPU_CHECK_DISPATCH(t, check_reduce<T>(n, op, divisor, off[0], off[1], off[2], off[3], second, in_place, seed))
}

// Element offsets of a, b, y (unused in place) and the second output, and which outputs exist.
struct Layout {
  int64_t off[4];
  bool second, in_place;
};
// aligned (vector path); everything misaligned; misaligned outputs + second output; aligned second
// output (the vector path's y2 store); in place; in place + misaligned second; in place + aligned second.
constexpr Layout kLayouts[] = {{{0, 0, 0, 0}, false, false}, {{1, 3, 2, 0}, false, false},
                               {{0, 0, 1, 2}, true, false},  {{0, 0, 0, 0}, true, false},
                               {{0, 0, 0, 0}, false, true},  {{0, 0, 0, 1}, true, true},
                               {{0, 0, 0, 0}, true, true}};

}  // namespace

TEST_CASE("comm kernels: ring_reduce matches the host arithmetic bit for bit") {
  const DType dtypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i32, DType::i64};
  const int64_t sizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 1023, 4097, 100003};
  int cases = 0;
  for (DType t : dtypes) {
    for (int64_t n : sizes) {
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Avg}) {
        const int div = op == ReduceOp::Avg ? 3 : 1;
        const uint64_t seed = static_cast<uint64_t>(n) * 31 + static_cast<uint64_t>(t);
        for (size_t l = 0; l < std::size(kLayouts); ++l) {
          const Layout& L = kLayouts[l];
          const std::string e = check_reduce_any(t, n, op, div, L.off, L.second, L.in_place, seed + l);
          CHECK_MESSAGE(e.empty(), e);
          ++cases;
        }
      }
    }
  }
  MESSAGE(cases, " ring_reduce cases");
}

TEST_CASE("comm kernels: ring_reduce grid-stride loops (more work than 1024 blocks x 256 threads)") {
  // 2^21 + 2^18 + 5 elements: > 1024 * 256 16-byte vectors for every dtype (f16: 294912), so both
  // the vector loop and the scalar loop take a second grid-stride iteration; the tail is 5 elements.
  const int64_t n = (int64_t{1} << 21) + (int64_t{1} << 18) + 5;
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i32, DType::i64}) {
    for (size_t l : {size_t{0}, size_t{1}, size_t{3}}) {  // vector, scalar, vector with a second output
      const Layout& L = kLayouts[l];
      const std::string e = check_reduce_any(t, n, ReduceOp::Avg, 2, L.off, L.second, L.in_place, 7 + l);
      CHECK_MESSAGE(e.empty(), e);
    }
  }
}

TEST_CASE("comm kernels: the arithmetic rules of the Note, on chosen values") {
  // Worked out by hand: f16 1 + 2^-11 is a tie between 1 and 1 + 2^-10: even is 1.
  // bf16 1 + 2^-8 ties to 1; 1 + 3 * 2^-8 rounds to 1 + 2^-7 * 2 = 1.015625.
  // i32 wraps: 2147483647 + 1 = -2147483648; avg of -7 over 2 truncates to -3.
  // max(+0, -0) is +0 either way round; NaN wins.
  auto run = [](DType t, double a, double b, ReduceOp op, int div) {
    Tensor ha = rg::full(Shape{1}, a, TensorOptions(t)), hb = rg::full(Shape{1}, b, TensorOptions(t));
    DevBuf da(1, t, 0), db(1, t, 0);
    cuda::memcpy(da.ptr, ha.data_ptr(), dtype_size(t), cuda::CopyKind::HostToDevice);
    cuda::memcpy(db.ptr, hb.data_ptr(), dtype_size(t), cuda::CopyKind::HostToDevice);
    cuda::ring_reduce_out_cuda(da.ptr, nullptr, da.ptr, db.ptr, 1, t,
                               op == ReduceOp::Max ? cuda::CommOp::Max : cuda::CommOp::Sum, div,
                               cuda::current_stream(0).handle);
    Tensor out = rg::empty(Shape{1}, TensorOptions(t));
    cuda::memcpy(out.data_ptr(), da.ptr, dtype_size(t), cuda::CopyKind::DeviceToHost);
    return out;
  };
  CHECK(run(DType::f16, 1.0, 1.0 / 2048, ReduceOp::Sum, 1).item() == 1.0);
  CHECK(run(DType::f16, 1.0, 3.0 / 2048, ReduceOp::Sum, 1).item() == 1.0 + 2.0 / 1024);
  CHECK(run(DType::bf16, 1.0, 1.0 / 256, ReduceOp::Sum, 1).item() == 1.0);
  CHECK(run(DType::bf16, 1.0, 3.0 / 256, ReduceOp::Sum, 1).item() == 1.015625);
  CHECK(run(DType::i32, 2147483647.0, 1.0, ReduceOp::Sum, 1).item() == -2147483648.0);
  CHECK(run(DType::i64, -3.0, -4.0, ReduceOp::Sum, 2).item() == -3.0);
  CHECK(run(DType::f32, 1.0, 2.0, ReduceOp::Sum, 3).item() == static_cast<double>(3.0f / 3.0f));
  CHECK(run(DType::f32, 1.0, 1.0, ReduceOp::Sum, 3).item() == static_cast<double>(2.0f / 3.0f));
  const Tensor pz = run(DType::f32, 0.0, -0.0, ReduceOp::Max, 1), nz = run(DType::f32, -0.0, 0.0, ReduceOp::Max, 1);
  CHECK_FALSE(std::signbit(pz.item()));
  CHECK_FALSE(std::signbit(nz.item()));
  CHECK(std::isnan(run(DType::f32, 1.0, std::nan(""), ReduceOp::Max, 1).item()));
  CHECK(std::isnan(run(DType::f64, std::nan(""), 5.0, ReduceOp::Max, 1).item()));
  CHECK(run(DType::bf16, -2.5, 3.0, ReduceOp::Max, 1).item() == 3.0);
  // The reduced floats follow the same max rules (widened to f32, compared, stored back).
  CHECK(std::isnan(run(DType::f16, 1.0, std::nan(""), ReduceOp::Max, 1).item()));
  CHECK(std::isnan(run(DType::bf16, std::nan(""), -1.0, ReduceOp::Max, 1).item()));
  CHECK_FALSE(std::signbit(run(DType::f16, -0.0, 0.0, ReduceOp::Max, 1).item()));
  CHECK_FALSE(std::signbit(run(DType::bf16, 0.0, -0.0, ReduceOp::Max, 1).item()));
  CHECK(run(DType::f16, -3.0, -2.0, ReduceOp::Max, 1).item() == -2.0);
  CHECK(run(DType::i64, -5.0, -9.0, ReduceOp::Max, 1).item() == -5.0);
}

TEST_CASE("comm kernels: ring_copy to one and two destinations at every alignment") {
  int cases = 0;
  // 4 MiB + 4099 bytes: more 16-byte words than 1024 blocks x 256 threads (a second grid-stride pass).
  for (int64_t nbytes : {int64_t{1}, int64_t{3}, int64_t{16}, int64_t{17}, int64_t{4096}, int64_t{1} << 20,
                         (int64_t{1} << 20) + 5, (int64_t{1} << 22) + 4099}) {
    for (int64_t off : {0, 1, 2, 4, 8, 15}) {
      for (bool two : {false, true}) {
        std::vector<uint8_t> src(static_cast<size_t>(nbytes));
        for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(mix(i + static_cast<uint64_t>(off)) & 0xff);
        DevBuf ds(nbytes, DType::u8, off), d1(nbytes, DType::u8, (off * 3) % 16), d2(nbytes, DType::u8, off);
        cuda::memcpy(ds.ptr, src.data(), src.size(), cuda::CopyKind::HostToDevice);
        cuda::ring_copy_cuda(d1.ptr, two ? d2.ptr : nullptr, ds.ptr, nbytes, cuda::current_stream(0).handle);
        std::vector<uint8_t> g1(src.size()), g2(src.size());
        cuda::memcpy(g1.data(), d1.ptr, g1.size(), cuda::CopyKind::DeviceToHost);
        CHECK_MESSAGE(g1 == src, "copy of ", nbytes, " bytes at offset ", off);
        if (two) {
          cuda::memcpy(g2.data(), d2.ptr, g2.size(), cuda::CopyKind::DeviceToHost);
          CHECK_MESSAGE(g2 == src, "second copy of ", nbytes, " bytes at offset ", off);
        }
        ++cases;
      }
    }
  }
  MESSAGE(cases, " ring_copy cases");
}

}  // namespace rg::test::gpu

#endif  // RINGGRAD_WITH_CUDA
