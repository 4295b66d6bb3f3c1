// Naming stack frames for reports a person reads: the dynamic symbol table first (dladdr1), then
// `addr2line` on the program itself for static functions, lambdas and file:line. Used by autograd's
// anomaly mode (forward stacks) and the hang watchdog (stalled threads' stacks).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rg {

struct StackFrame {
  void* pc = nullptr;
  std::string name;          // demangled function, "" when unknown
  uintptr_t name_off = 0;    // pc - the function's start, when `name` came from the dynamic symbols
  std::string where;         // "file.cpp:12" from addr2line, "" when unknown
  std::string object;        // "/proc/self/exe" for the program, a library's path, "" when unknown
  uintptr_t offset = 0;      // pc - the object's load address
};

// The frame of a return address, named from the dynamic symbol table where it is there.
StackFrame resolve_frame(void* pc);

// Runs one `addr2line -Cfe` over the program's frames (object "/proc/self/exe"): names the unnamed
// ones and fills `where` where there is debug information. Libraries are left as file+offset: most
// ship without a full symbol table, and addr2line would name the nearest exported function instead.
// Does nothing when addr2line is not installed.
void resolve_with_addr2line(const std::vector<StackFrame*>& frames);

// The frame's object as a short name: the program's invocation name, or a library's file name.
std::string frame_object_name(const StackFrame& f);

std::string hex_address(uintptr_t v);  // "0x4c"

}  // namespace rg
