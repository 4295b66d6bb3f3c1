// The NCCL version this build links, for `ringgrad info`.
#pragma once

#include <string>

namespace rg::dist {

// "NCCL 2.28.9" (the library actually loaded), or "NCCL not built" without NCCL support.
std::string nccl_version();

}  // namespace rg::dist
