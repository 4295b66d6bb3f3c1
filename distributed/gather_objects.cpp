// all_gather_bytes (distributed/gather_objects.h): sizes first, then the padded payloads.
#include "distributed/gather_objects.h"

#include <algorithm>
#include <cstring>

#include "core/native.h"

namespace rg::dist {

std::vector<std::vector<uint8_t>> all_gather_bytes(ProcessGroup& pg, const std::vector<uint8_t>& mine, Device device) {
  const int world = pg.size();
  const TensorOptions i64 = TensorOptions(DType::i64).device(device);
  Tensor size = full({1}, static_cast<double>(mine.size()), i64);
  Tensor sizes = empty({world}, i64);
  pg.allgather(sizes, size)->wait();
  const std::vector<int64_t> n = sizes.to_vector<int64_t>();  // synchronises with the device
  const int64_t longest = *std::max_element(n.begin(), n.end());
  const int64_t words = std::max<int64_t>(1, (longest + 7) / 8);
  Tensor host = zeros({words}, DType::i64);
  if (!mine.empty()) std::memcpy(host.data_ptr(), mine.data(), mine.size());
  const Tensor payload = native::to(host, device, DType::i64);
  Tensor all = empty({world * words}, i64);
  pg.allgather(all, payload)->wait();
  const Tensor back = native::to(all, kCPU, DType::i64);
  const auto* bytes = static_cast<const uint8_t*>(back.data_ptr());
  std::vector<std::vector<uint8_t>> out(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    RG_CHECK(n[r] >= 0 && n[r] <= words * 8, "all_gather_bytes: rank ", r, " reported ", n[r], " bytes");
    const uint8_t* p = bytes + static_cast<size_t>(r) * static_cast<size_t>(words) * 8;
    out[static_cast<size_t>(r)].assign(p, p + n[r]);
  }
  return out;
}

}  // namespace rg::dist
