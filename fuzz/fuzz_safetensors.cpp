// Fuzzes load_safetensors (nn/checkpoint.cpp). An input whose first byte is even is the file itself;
// odd, the rest is "<json header>\0<data section>" and the target writes the 8-byte length before it,
// so mutations of the header keep a consistent length. A load returns tensors that fill the data
// section exactly and read back unchanged after save_safetensors, or throws rg::Error naming the file.
#include <cstring>

#include "fuzz/fuzz_util.h"
#include "nn/checkpoint.h"

namespace {
std::string file_bytes(const uint8_t* data, size_t size) {
  if (size == 0) return {};
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) return rest;
  const size_t nul = rest.find('\0');
  const std::string header = rest.substr(0, nul);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  out += header;
  if (nul != std::string::npos) out += rest.substr(nul + 1);
  return out;
}

void check_same(const rg::nn::SafeTensors& a, const rg::nn::SafeTensors& b) {
  RG_FUZZ_CHECK(a.metadata == b.metadata, "metadata changed through save and load");
  RG_FUZZ_CHECK(a.tensors.size() == b.tensors.size(), "tensor count changed through save and load");
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& [na, ta] = a.tensors[i];
    const auto& [nb, tb] = b.tensors[i];
    RG_FUZZ_CHECK(na == nb && ta.dtype() == tb.dtype() && ta.sizes() == tb.sizes(), "tensor ", i, " '", na, "' changed");
    RG_FUZZ_CHECK(ta.nbytes() == tb.nbytes() && std::memcmp(ta.data_ptr(), tb.data_ptr(), ta.nbytes()) == 0, "bytes of '",
                  na, "' changed");
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = file_bytes(data, size);
  const std::string path = rg::fuzz::write_scratch("in.safetensors", bytes);
  rg::nn::SafeTensors st;
  if (!rg::fuzz::returns_or_rg_error([&] { st = rg::nn::load_safetensors(path); }, path)) return 0;
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[static_cast<size_t>(i)])) << (8 * i);
  size_t total = 0;
  for (const auto& [name, t] : st.tensors) {
    RG_FUZZ_CHECK(t.defined() && t.is_contiguous() && t.device().is_cpu(), "tensor '", name, "'");
    RG_FUZZ_CHECK(name != "__metadata__", "a tensor named __metadata__");
    total += t.nbytes();
  }
  RG_FUZZ_CHECK(total == bytes.size() - 8 - hlen, total, " tensor bytes for a ", bytes.size() - 8 - hlen,
                "-byte data section");
  const std::string out = rg::fuzz::scratch_dir() + "/out.safetensors";
  rg::nn::save_safetensors(out, st.tensors, st.metadata);
  check_same(st, rg::nn::load_safetensors(out));
  return 0;
}
