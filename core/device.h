// Device: where a tensor's memory lives. "cpu" or "cuda:N", parsed and printed as PyTorch does.
#pragma once

#include <cstdint>
#include <string>

namespace rg {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;  // always 0 on cpu; the CUDA ordinal (after CUDA_VISIBLE_DEVICES) on cuda

  constexpr Device() = default;
  constexpr Device(DeviceType t, int i) : type(t), index(t == DeviceType::CPU ? 0 : i) {}
  static constexpr Device cpu() { return Device(DeviceType::CPU, 0); }
  static constexpr Device cuda(int i = 0) { return Device(DeviceType::CUDA, i); }
  // "cpu", "cuda", "cuda:1"; throws rg::Error on anything else.
  static Device parse(const std::string& s);

  constexpr bool is_cpu() const { return type == DeviceType::CPU; }
  constexpr bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  constexpr bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  constexpr bool operator!=(const Device& o) const { return !(*this == o); }
};

inline constexpr Device kCPU = Device::cpu();

}  // namespace rg
