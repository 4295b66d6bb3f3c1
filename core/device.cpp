// Device parsing: "cpu", "cuda", "cuda:N".
#include "core/device.h"

#include "core/error.h"

namespace rg {

Device Device::parse(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5) {
    int idx = 0;
    for (size_t i = 5; i < s.size(); ++i) {
      RG_CHECK(s[i] >= '0' && s[i] <= '9', "invalid device string '", s, "': expected cpu, cuda or cuda:N");
      idx = idx * 10 + (s[i] - '0');
    }
    return Device::cuda(idx);
  }
  RG_THROW("invalid device string '", s, "': expected cpu, cuda or cuda:N");
}

}  // namespace rg
