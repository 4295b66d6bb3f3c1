// Anomaly mode (Note [Anomaly mode] in autograd/anomaly.h): the switch, forward stacks captured at
// node creation and symbolised on demand, and the check of each node's backward outputs.
#include "autograd/anomaly.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/error.h"
#include "core/native.h"

namespace rg::autograd {

namespace {
std::atomic<bool> g_anomaly{false};
constexpr int kMaxCapture = 48;

std::string hex(uintptr_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%zx", static_cast<size_t>(v));
  return b;
}

std::string demangled(const char* sym) {
  int status = 0;
  char* dm = abi::__cxa_demangle(sym, nullptr, nullptr, &status);
  std::string name = status == 0 && dm ? dm : sym;
  std::free(dm);
  if (name.size() > 160) name = name.substr(0, 157) + "...";
  return name;
}

bool is_main_program(const char* fname) {
  if (!fname || fname[0] != '/') return true;
  static const std::string exe = [] {
    std::error_code ec;
    return std::filesystem::canonical("/proc/self/exe", ec).string();
  }();
  std::error_code ec;
  return std::filesystem::canonical(fname, ec).string() == exe;
}

struct Frame {
  std::string name;      // demangled function (+ offset), "" when unknown
  std::string where;     // "file.cpp:12" from addr2line, "" when unknown
  std::string object;    // "/proc/self/exe" or a library path, "" when unknown
  uintptr_t offset = 0;  // pc - the object's load address
};

Frame resolve(void* pc) {
  Frame f;
  Dl_info di{};
  ElfW(Sym)* sym = nullptr;
  char* look = static_cast<char*>(pc) - 1;  // a return address points past its call
  if (!::dladdr1(look, &di, reinterpret_cast<void**>(&sym), RTLD_DL_SYMENT)) return f;
  f.object = is_main_program(di.dli_fname) ? "/proc/self/exe" : di.dli_fname;
  f.offset = static_cast<uintptr_t>(look - static_cast<char*>(di.dli_fbase));
  const char* start = static_cast<const char*>(di.dli_saddr);
  if (di.dli_sname && sym && look >= start && look < start + std::max<size_t>(sym->st_size, 1)) {
    f.name = demangled(di.dli_sname);
  }
  return f;
}

// The program's frames through `addr2line -Cfe`: names of static functions (the full symbol
// table), and file:line where there is debug information. Skipped when addr2line is missing.
void resolve_with_addr2line(std::vector<Frame>& frames) {
  std::vector<Frame*> mine;
  std::string cmd = "addr2line -Cfe /proc/";  // not the shell's /proc/self
  cmd += std::to_string(::getpid());
  cmd += "/exe";
  for (Frame& f : frames) {
    if (f.object != "/proc/self/exe") continue;
    mine.push_back(&f);
    cmd += ' ';
    cmd += hex(f.offset);
  }
  if (mine.empty()) return;
  cmd += " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return;
  char line[4096];
  for (Frame* f : mine) {
    if (!std::fgets(line, sizeof line, p)) break;
    std::string fn = line;
    while (!fn.empty() && (fn.back() == '\n' || fn.back() == '\r')) fn.pop_back();
    if (!std::fgets(line, sizeof line, p)) break;
    std::string loc = line;
    while (!loc.empty() && (loc.back() == '\n' || loc.back() == '\r')) loc.pop_back();
    if (f->name.empty() && fn != "??" && !fn.empty()) f->name = fn.size() > 160 ? fn.substr(0, 157) + "..." : fn;
    if (loc.rfind("??", 0) != 0 && loc.find(":?") == std::string::npos && loc.find(":0") == std::string::npos) {
      const size_t slash = loc.rfind('/', loc.rfind(':'));
      f->where = slash == std::string::npos ? loc : loc.substr(slash + 1);
    }
  }
  ::pclose(p);
}

// Frames of the recording machinery (the capture, Node's constructor, the op's node, make_shared,
// autograd::record): cut from the top of a forward stack.
bool is_machinery(const std::string& name) {
  if (name.empty()) return false;
  return name.rfind("std::", 0) == 0 || name.rfind("void std::", 0) == 0 || name.rfind("__gnu_cxx", 0) == 0 ||
         name.find("rg::autograd::") != std::string::npos || name.find("Backward::") != std::string::npos ||
         name.find("Backward>") != std::string::npos;
}

std::string frame_text(const Frame& f) {
  const char* slash = std::strrchr(f.object.c_str(), '/');
  const std::string file = f.object == "/proc/self/exe" ? program_invocation_short_name
                                                          : (slash ? slash + 1 : f.object.c_str());
  std::string s = !f.name.empty() ? f.name : (f.object.empty() ? "??" : file + "+" + hex(f.offset));
  if (!f.where.empty()) s += " at " + f.where;
  if (!f.name.empty()) s += " (" + file + ")";
  return s;
}

// The first non-finite element of t: "nan" or "inf"; "" when every element is finite.
const char* non_finite_kind(const Tensor& t) {
  if (!is_floating(t.dtype()) || t.numel() == 0) return "";
  const Tensor h = native::to(t, kCPU, DType::f64, /*force_copy=*/true);
  const std::vector<double> v = h.contiguous().to_vector<double>();
  bool inf = false;
  for (double x : v) {
    if (std::isnan(x)) return "nan";
    inf = inf || std::isinf(x);
  }
  return inf ? "inf" : "";
}

const char* ordinal_suffix(size_t i) {
  if (i % 100 >= 11 && i % 100 <= 13) return "th";
  switch (i % 10) {
    case 1: return "st";
    case 2: return "nd";
    case 3: return "rd";
    default: return "th";
  }
}
}  // namespace

bool AnomalyMode::is_enabled() { return g_anomaly.load(std::memory_order_relaxed); }
void AnomalyMode::set_enabled(bool enabled) { g_anomaly.store(enabled); }

DetectAnomalyGuard::DetectAnomalyGuard() : prev_(AnomalyMode::is_enabled()) { AnomalyMode::set_enabled(true); }
DetectAnomalyGuard::~DetectAnomalyGuard() { AnomalyMode::set_enabled(prev_); }

std::shared_ptr<const ForwardTrace> capture_forward_trace() {
  auto t = std::make_shared<ForwardTrace>();
  t->frames.resize(kMaxCapture);
  const int n = ::backtrace(t->frames.data(), kMaxCapture);
  t->frames.resize(static_cast<size_t>(std::max(n, 0)));
  return t;
}

std::string format_forward_trace(const ForwardTrace& t, int max_frames) {
  std::vector<Frame> frames;
  for (void* pc : t.frames) frames.push_back(resolve(pc));
  resolve_with_addr2line(frames);
  size_t first = 1;  // frame 0 is capture_forward_trace itself
  while (first < frames.size() && (frames[first].name.empty() || is_machinery(frames[first].name))) {
    // Unnamed frames inside the program's own autograd code cannot be told apart: keep going only
    // while the frames are named machinery or unnamed ones right after the capture.
    if (frames[first].name.empty() && first > 3) break;
    ++first;
  }
  std::string out;
  int shown = 0;
  for (size_t i = first; i < frames.size() && shown < max_frames; ++i, ++shown) {
    out += "    #" + std::to_string(shown) + " " + frame_text(frames[i]) + "\n";
    if (frames[i].name == "main" || frames[i].name.rfind("main ", 0) == 0) break;
  }
  if (out.empty()) out = "    (no frames: the stack could not be captured)\n";
  return out;
}

void check_anomaly(const Node& n, const std::vector<Tensor>& outputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& g = outputs[i];
    if (!g.defined()) continue;
    const char* kind = non_finite_kind(g);
    if (!*kind) continue;
    std::string msg = "Function '" + n.name() + "' returned " + kind + " values in its " + std::to_string(i) +
                      ordinal_suffix(i) + " output (the gradient for its input " + std::to_string(i) + ", " +
                      g.describe() + ").\n";
    if (n.forward_trace) {
      msg += "The forward of " + n.name() + " was called at (anomaly mode):\n" + format_forward_trace(*n.forward_trace);
    } else {
      msg += "Its forward ran before anomaly mode was turned on: no stack was recorded.\n";
    }
    RG_THROW(msg);
  }
}

}  // namespace rg::autograd
