// LocalRanks (launcher_internal.h): fork/exec of one round's ranks on this node with
// PR_SET_PDEATHSIG, their stderr passed on through pipes with its tail kept, reaping and signals.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <thread>

#include "core/error.h"
#include "distributed/exit_codes.h"
#include "distributed/launcher_internal.h"

namespace rg::dist::detail {

std::string wait_status_text(int status) {
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    const std::string meaning = exit_code_meaning(code);
    return "exited with code " + std::to_string(code) +
           (meaning.rfind("exit code", 0) == 0 || code == 0 ? "" : " (" + meaning + ")");
  }
  if (WIFSIGNALED(status)) return "was " + exit_code_meaning(128 + WTERMSIG(status));
  return "stopped";
}

int wait_status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

namespace {

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t k = ::write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;  // the output is gone: keep the tail anyway
    p += k;
    n -= static_cast<size_t>(k);
  }
}

}  // namespace

LocalRanks::LocalRanks(Spec spec) : spec_(std::move(spec)) {
  const size_t n = spec_.envs.size();
  std::vector<char*> argv;
  for (auto& a : spec_.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::vector<char*>> envp(n);
  for (size_t i = 0; i < n; ++i) {
    for (auto& e : spec_.envs[i]) envp[i].push_back(e.data());
    envp[i].push_back(nullptr);
  }
  tails_.resize(n);
  const pid_t me = ::getpid();
  for (size_t i = 0; i < n; ++i) start(static_cast<int>(i), argv, envp[i], me);
}

void LocalRanks::start(int local, const std::vector<char*>& argv, const std::vector<char*>& envp, pid_t parent) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    const int e = errno;
    RG_THROW("ringgrad launch: pipe failed: ", net::errno_str(e));
  }
  net::Fd rd(fds[0]), wr(fds[1]);
  const int log = spec_.logs.empty() ? -1 : spec_.logs[static_cast<size_t>(local)].get();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Child: own process group, die with the launcher, default signals, stderr into the pipe.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(125);  // the launcher is already gone
    for (int s : {SIGINT, SIGTERM, SIGUSR1}) ::signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (log >= 0) ::dup2(log, 1);
    ::dup2(wr.get(), 2);
    ::execvpe(argv[0], argv.data(), envp.data());
    const int e = errno;
    char msg[512];
    const int k = std::snprintf(msg, sizeof msg, "ringgrad launch: cannot run '%s': %s\n", argv[0], strerror(e));
    if (k > 0) write_all(2, msg, static_cast<size_t>(k));
    ::_exit(127);
  }
  if (pid < 0) {
    const int e = errno;
    for (size_t i = 0; i < pids_.size(); ++i) ::killpg(pids_[i], SIGKILL);
    for (size_t i = 0; i < pids_.size(); ++i) ::waitpid(pids_[i], nullptr, 0);
    running_.assign(running_.size(), false);
    RG_THROW("ringgrad launch: fork failed: ", net::errno_str(e));
  }
  ::setpgid(pid, pid);  // also here, so it holds before we ever signal the group
  net::set_nonblocking(rd.get(), true);
  pids_.push_back(pid);
  running_.push_back(true);
  err_.push_back(std::move(rd));
}

LocalRanks::~LocalRanks() {
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (!running_[i]) continue;
    ::killpg(pids_[i], SIGKILL);
    ::waitpid(pids_[i], nullptr, 0);
  }
}

void LocalRanks::pump(size_t i) {
  char buf[16384];
  for (;;) {
    if (!err_[i].valid()) return;
    const ssize_t k = ::read(err_[i].get(), buf, sizeof buf);
    if (k > 0) {
      const int out = spec_.logs.empty() ? 2 : spec_.logs[i].get();  // stdout shares the log's offset
      write_all(out, buf, static_cast<size_t>(k));
      std::string& t = tails_[i];
      t.append(buf, static_cast<size_t>(k));
      if (t.size() > 2 * spec_.tail_bytes) t.erase(0, t.size() - spec_.tail_bytes);
      continue;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) err_[i].reset();  // every writer has closed it
    return;
  }
}

// After a rank exited: what its pipe still holds (its own children may keep it open: bounded).
void LocalRanks::drain(size_t i, Millis limit) {
  const auto until = LaunchClock::now() + limit;
  while (err_[i].valid()) {
    pollfd p{err_[i].get(), POLLIN, 0};
    const int left = static_cast<int>(std::chrono::duration_cast<Millis>(until - LaunchClock::now()).count());
    if (left <= 0 || ::poll(&p, 1, left) <= 0) return;
    pump(i);
  }
}

std::vector<LocalRanks::Exit> LocalRanks::poll(Millis wait) {
  std::vector<pollfd> pfds;
  std::vector<size_t> which;
  for (size_t i = 0; i < err_.size(); ++i) {
    if (err_[i].valid()) {
      pfds.push_back({err_[i].get(), POLLIN, 0});
      which.push_back(i);
    }
  }
  if (pfds.empty()) {
    std::this_thread::sleep_for(wait);
  } else if (::poll(pfds.data(), pfds.size(), static_cast<int>(wait.count())) > 0) {
    for (size_t j = 0; j < pfds.size(); ++j) {
      if (pfds[j].revents) pump(which[j]);
    }
  }
  std::vector<Exit> out;
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (!running_[i]) continue;
    int status = 0;
    if (::waitpid(pids_[i], &status, WNOHANG) != pids_[i]) continue;
    running_[i] = false;
    ::killpg(pids_[i], SIGKILL);  // leftovers of its process group, if any
    drain(i, Millis(200));
    out.push_back({static_cast<int>(i), status});
  }
  return out;
}

void LocalRanks::signal_all(int sig) {
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (running_[i]) ::killpg(pids_[i], sig);
  }
}

int LocalRanks::alive() const { return static_cast<int>(std::count(running_.begin(), running_.end(), true)); }

std::string LocalRanks::tail(int local, int lines) const {
  const std::string& t = tails_[static_cast<size_t>(local)];
  size_t end = t.size();
  while (end > 0 && t[end - 1] == '\n') --end;
  size_t start = end;
  for (int k = 0; k < lines && start > 0; ++k) {
    const size_t nl = t.rfind('\n', start - 1);
    start = nl == std::string::npos ? 0 : nl;
  }
  if (start < end && t[start] == '\n') ++start;
  return t.substr(start, end - start);
}

std::string LocalRanks::from_last(int local, const std::string& marker, int lines) const {
  const std::string& t = tails_[static_cast<size_t>(local)];
  size_t at = t.rfind("\n" + marker);
  if (at == std::string::npos) {
    if (t.rfind(marker, 0) != 0) return "";
    at = 0;
  } else {
    ++at;
  }
  size_t end = at;
  for (int k = 0; k < lines && end < t.size(); ++k) {
    const size_t nl = t.find('\n', end);
    end = nl == std::string::npos ? t.size() : nl + 1;
  }
  while (end > at && t[end - 1] == '\n') --end;
  return t.substr(at, end - at);
}

bool LocalRanks::all_alive_stopped() const {
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (!running_[i]) continue;
    FILE* f = std::fopen(("/proc/" + std::to_string(pids_[i]) + "/stat").c_str(), "r");
    if (!f) return false;
    char buf[512] = {0};
    const size_t k = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    const char* close = static_cast<const char*>(memrchr(buf, ')', k));
    if (!close || close + 2 >= buf + k || (close[2] != 'T' && close[2] != 't')) return false;
  }
  return true;
}

}  // namespace rg::dist::detail
