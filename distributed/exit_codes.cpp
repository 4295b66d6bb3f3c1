// Names of the exit codes of Note [Exit codes] (exit_codes.h), for the launcher's messages.
#include "distributed/exit_codes.h"

#include <string.h>

namespace rg::dist {

std::string exit_code_meaning(int code) {
  switch (code) {
    case 0: return "success";
    case kExitPreempted: return "preempted, checkpoint saved";
    case kExitCollectiveHang: return "collective hang seen by the watchdog";
    case kExitNanStop: return "stopped by the NaN guard";
    case 124: return "job timeout";
    case 127: return "program not found";
    default: break;
  }
  if (code > 128 && code < 128 + 65) {
    const int sig = code - 128;
    const char* abbrev = sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) + (abbrev ? std::string(" (SIG") + abbrev + ")" : "");
  }
  return "exit code " + std::to_string(code);
}

}  // namespace rg::dist
