// Stack frame names (core/stack_symbols.h): dladdr1 on the dynamic symbol table, then one addr2line
// process for the program's own frames.
#include "core/stack_symbols.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

namespace rg {

namespace {

constexpr size_t kMaxName = 200;

std::string shortened(std::string s) {
  if (s.size() > kMaxName) s = s.substr(0, kMaxName - 3) + "...";
  return s;
}

std::string demangled(const char* sym) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> dm(abi::__cxa_demangle(sym, nullptr, nullptr, &status), &std::free);
  return shortened(status == 0 && dm ? dm.get() : sym);
}

// The main program reports the name it was started as; /proc/self/exe is that file wherever we are.
bool is_main_program(const char* fname) {
  if (!fname || fname[0] != '/') return true;  // "" or the relative name it was started with
  static const std::string exe = [] {
    std::error_code ec;
    return std::filesystem::canonical("/proc/self/exe", ec).string();
  }();
  std::error_code ec;
  return std::filesystem::canonical(fname, ec).string() == exe;
}

std::string chomp(const char* line) {
  std::string s = line;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

std::string hex_address(uintptr_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%zx", static_cast<size_t>(v));
  return b;
}

StackFrame resolve_frame(void* pc) {
  StackFrame f;
  f.pc = pc;
  Dl_info di{};
  ElfW(Sym)* sym = nullptr;
  char* look = static_cast<char*>(pc) - 1;  // a return address points past its call
  if (!::dladdr1(look, &di, reinterpret_cast<void**>(&sym), RTLD_DL_SYMENT)) return f;
  f.object = is_main_program(di.dli_fname) ? "/proc/self/exe" : di.dli_fname;
  f.offset = static_cast<uintptr_t>(look - static_cast<char*>(di.dli_fbase));
  const char* start = static_cast<const char*>(di.dli_saddr);
  if (di.dli_sname && sym && look >= start && look < start + std::max<size_t>(sym->st_size, 1)) {
    f.name = demangled(di.dli_sname);
    f.name_off = static_cast<uintptr_t>(static_cast<char*>(pc) - start);
  }
  return f;
}

void resolve_with_addr2line(const std::vector<StackFrame*>& frames) {
  std::vector<StackFrame*> mine;
  std::string cmd = "addr2line -Cfe /proc/" + std::to_string(::getpid()) + "/exe";  // not the shell's /proc/self
  for (StackFrame* f : frames) {
    if (f->object != "/proc/self/exe") continue;
    mine.push_back(f);
    cmd += " " + hex_address(f->offset);
  }
  if (mine.empty()) return;
  cmd += " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return;
  char line[4096];
  for (StackFrame* f : mine) {  // two lines per address: the function, then file:line
    if (!std::fgets(line, sizeof line, p)) break;
    const std::string fn = chomp(line);
    if (!std::fgets(line, sizeof line, p)) break;
    const std::string loc = chomp(line);  // "??:?" or "file:0" without debug information
    if (f->name.empty() && fn != "??" && !fn.empty()) f->name = shortened(fn);
    if (loc.rfind("??", 0) != 0 && loc.find(":?") == std::string::npos && loc.find(":0") == std::string::npos) {
      const size_t slash = loc.rfind('/', loc.rfind(':'));
      f->where = slash == std::string::npos ? loc : loc.substr(slash + 1);
    }
  }
  ::pclose(p);
}

std::string frame_object_name(const StackFrame& f) {
  if (f.object == "/proc/self/exe") return program_invocation_short_name;
  const char* slash = std::strrchr(f.object.c_str(), '/');
  return slash ? slash + 1 : f.object;
}

}  // namespace rg
