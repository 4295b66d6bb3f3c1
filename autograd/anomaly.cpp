// Anomaly mode (Note [Anomaly mode] in autograd/anomaly.h): the switch, forward stacks captured at
// node creation and symbolised on demand, and the check of each node's backward outputs.
#include "autograd/anomaly.h"

#include <execinfo.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/error.h"
#include "core/native.h"
#include "core/stack_symbols.h"

namespace rg::autograd {

namespace {
std::atomic<bool> g_anomaly{false};
constexpr int kMaxCapture = 48;

// Frames of the recording machinery (the capture, Node's constructor, the op's node, make_shared,
// autograd::record): cut from the top of a forward stack.
bool is_machinery(const std::string& name) {
  if (name.empty()) return false;
  return name.rfind("std::", 0) == 0 || name.rfind("void std::", 0) == 0 || name.rfind("__gnu_cxx", 0) == 0 ||
         name.find("rg::autograd::") != std::string::npos || name.find("Backward::") != std::string::npos ||
         name.find("Backward>") != std::string::npos;
}

std::string frame_text(const StackFrame& f) {
  const std::string file = frame_object_name(f);
  std::string s = !f.name.empty() ? f.name : (f.object.empty() ? "??" : file + "+" + hex_address(f.offset));
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
  std::vector<StackFrame> frames;
  for (void* pc : t.frames) frames.push_back(resolve_frame(pc));
  std::vector<StackFrame*> all;
  for (StackFrame& f : frames) all.push_back(&f);
  resolve_with_addr2line(all);
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
