// Preemption signal handlers (Note [Preemption signals]), the fault-injection plan (Note [Fault
// injection]) and the clean-up of temporaries left by interrupted saves (train/faults.h).
#include "train/faults.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "core/error.h"
#include "distributed/exit_codes.h"

namespace fs = std::filesystem;

namespace rg::train {

// ---- signals
namespace {
constexpr std::array<int, 3> kSignals = {SIGTERM, SIGUSR1, SIGINT};
std::atomic<int> g_signal{0};
std::atomic<bool> g_announce{false};
static_assert(std::atomic<int>::is_always_lock_free, "the signal flag must be lock-free to be async-signal-safe");

std::mutex g_install_mu;
int g_installed = 0;
struct sigaction g_old[kSignals.size()];

void say(const char* s) {
  const ssize_t n = ::write(STDERR_FILENO, s, ::strlen(s));
  (void)n;
}

// Only async-signal-safe calls: atomics, write(2), _exit(2).
void on_signal(int sig) {
  int expected = 0;
  if (g_signal.compare_exchange_strong(expected, sig)) {
    if (g_announce.load()) {
      switch (sig) {
        case SIGINT:
          say("\nringgrad: got SIGINT: finishing this step, then saving last.safetensors and exiting "
              "(press Ctrl-C again to exit at once)\n");
          break;
        case SIGUSR1:
          say("ringgrad: got SIGUSR1: finishing this step, then saving last.safetensors and exiting "
              "(a second signal exits at once)\n");
          break;
        default:
          say("ringgrad: got SIGTERM: finishing this step, then saving last.safetensors and exiting "
              "(a second signal exits at once)\n");
      }
    }
    return;
  }
  say("ringgrad: second signal: exiting at once (the files already saved are left as they are)\n");
  ::_exit(128 + sig);
}
}  // namespace

PreemptSignals::PreemptSignals(bool announce) {
  std::lock_guard<std::mutex> g(g_install_mu);
  if (announce) g_announce = true;
  if (g_installed++ > 0) return;
  g_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &sa, &g_old[i]);
}

PreemptSignals::~PreemptSignals() {
  std::lock_guard<std::mutex> g(g_install_mu);
  if (--g_installed > 0) return;
  for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &g_old[i], nullptr);
  g_announce = false;
  g_signal = 0;  // it belonged to this run
}

int PreemptSignals::pending() { return g_signal.load(); }
void PreemptSignals::reset() { g_signal = 0; }

int preempt_exit_code(int sig) { return sig == SIGINT ? 130 : dist::kExitPreempted; }

std::string signal_name(int sig) {
  const char* a = ::sigabbrev_np(sig);
  return a ? std::string("SIG") + a : "signal " + std::to_string(sig);
}

// ---- fault injection
FaultPlan FaultPlan::parse(const std::string& spec) {
  struct Name {
    const char* text;
    Action action;
  };
  static const Name kNames[] = {{"kill", Action::Kill},   {"term", Action::Term}, {"usr1", Action::Usr1},
                                {"int", Action::Int},     {"term2", Action::Term2}, {"nan", Action::Nan},
                                {"nanloss", Action::NanLoss}};
  FaultPlan p;
  size_t start = 0;
  while (start <= spec.size()) {
    const size_t comma = spec.find(',', start);
    const std::string item = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? spec.size() + 1 : comma + 1;
    if (item.empty()) continue;
    const size_t at = item.find('@');
    RG_CHECK(at != std::string::npos, "RINGGRAD_FAULT: '", item, "' is not ACTION@STEP[+][:RANK]");
    Item it;
    bool known = false;
    for (const Name& n : kNames) {
      if (item.compare(0, at, n.text) == 0 && at == std::strlen(n.text)) it.action = n.action, known = true;
    }
    RG_CHECK(known, "RINGGRAD_FAULT: unknown action in '", item, "' (kill, term, usr1, int, term2, nan, nanloss)");
    const char* s = item.c_str() + at + 1;
    char* end = nullptr;
    errno = 0;
    it.step = std::strtoll(s, &end, 10);
    RG_CHECK(end != s && errno == 0 && it.step >= 1, "RINGGRAD_FAULT: bad step in '", item, "' (an integer >= 1)");
    if (*end == '+') it.onward = true, ++end;
    if (*end == ':') {
      const char* r = end + 1;
      it.rank = static_cast<int>(std::strtol(r, &end, 10));
      RG_CHECK(end != r && it.rank >= 0, "RINGGRAD_FAULT: bad rank in '", item, "'");
    }
    RG_CHECK(*end == '\0', "RINGGRAD_FAULT: trailing text in '", item, "'");
    p.items.push_back(it);
  }
  return p;
}

FaultPlan FaultPlan::from_environment(const std::string& spec) {
  const char* restart = std::getenv("TORCHELASTIC_RESTART_COUNT");
  if (restart && std::atoi(restart) > 0) return {};
  if (!spec.empty()) return parse(spec);
  const char* env = std::getenv("RINGGRAD_FAULT");
  return env ? parse(env) : FaultPlan{};
}

bool FaultPlan::has(Action a, int64_t step, int rank) const {
  for (const Item& it : items) {
    if (it.action != a || (it.rank >= 0 && it.rank != rank)) continue;
    if (it.onward ? step >= it.step : step == it.step) return true;
  }
  return false;
}

// ---- temporaries of interrupted saves
std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return removed;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const size_t at = name.rfind(".tmp-");
    if (at == std::string::npos || !e.is_regular_file(ec)) continue;
    const std::string pid_text = name.substr(at + 5);
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::strtol(pid_text.c_str(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // its writer may still be alive
    if (fs::remove(e.path(), ec)) removed.push_back(name);
  }
  return removed;
}

}  // namespace rg::train
