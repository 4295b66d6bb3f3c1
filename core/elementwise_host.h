// The host's math policy for core/elementwise_formulas.h (Note [Elementwise formulas]): the std::
// functions, plain products and sums, and rg::cpu::cast. Used by core/cpu/unary.cpp and binary.cpp.
#pragma once

#include <cmath>

#include "core/cpu/loops.h"
#include "core/elementwise_formulas.h"

namespace rg::cpu {

struct HostMath {
  template <class C> static C exp(C x) { return std::exp(x); }
  template <class C> static C log(C x) { return std::log(x); }
  template <class C> static C sqrt(C x) { return std::sqrt(x); }
  template <class C> static C tanh(C x) { return std::tanh(x); }
  template <class C> static C log1p(C x) { return std::log1p(x); }
  template <class C> static C expm1(C x) { return std::expm1(x); }
  template <class C> static C erf(C x) { return std::erf(x); }
  template <class C> static C floor(C x) { return std::floor(x); }
  template <class C> static C rint(C x) { return std::nearbyint(x); }  // half to even, as torch.round
  template <class C> static C fabs(C x) { return std::fabs(x); }
  template <class C> static bool isfinite(C x) { return std::isfinite(x); }
  template <class C> static C pow(C x, C y) { return std::pow(x, y); }
  template <class C> static C atan2(C y, C x) { return std::atan2(y, x); }
  // The compiler may contract these as it contracted the CPU's own a * x + b before.
  template <class C> static C mul_rn(C x, C y) { return x * y; }
  template <class C> static C add_rn(C x, C y) { return x + y; }
  template <class To, class From> static To cast(From v) { return cpu::cast<To>(v); }
};

}  // namespace rg::cpu
