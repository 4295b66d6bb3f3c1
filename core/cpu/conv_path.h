// Which path the CPU f32 convolution takes (Note [CPU direct convolution] in core/cpu/conv.cpp):
// Auto picks the direct path where it fits, Im2col forces the column-matrix path everywhere. A
// process-wide switch for tests (both paths against the same reference) and benchmarks.
#pragma once

namespace rg::cpu {

enum class ConvPath { Auto, Im2col };
void set_conv_path(ConvPath p);
ConvPath conv_path();

}  // namespace rg::cpu
