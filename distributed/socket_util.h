// Small POSIX socket helpers shared by the TCP store and the TCP ring transport: an owning fd,
// listen/connect with deadlines, whole-buffer send/recv with poll timeouts. IPv4 only.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace rg::dist::net {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

// An owned file descriptor, closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    const int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset();

 private:
  int fd_ = -1;
};

std::string errno_str(int err);  // "Connection refused"

// Listens on all interfaces at `port` (0: any free port). On failure returns an invalid Fd and
// sets *err to "bind: Address already in use" (the failing call and strerror).
Fd listen_tcp(int port, int backlog, int* bound_port, std::string* err);
// Connects to host:port, retrying refused/unreachable attempts until the deadline. On failure
// returns an invalid Fd with the last error in *err.
Fd connect_tcp(const std::string& host, int port, Deadline deadline, std::string* err);
// Accepts one connection, waiting until the deadline (invalid Fd on timeout, err set).
Fd accept_tcp(int listen_fd, Deadline deadline, std::string* err);

void set_nonblocking(int fd, bool on);
void set_nodelay(int fd);
std::string local_ip(int fd);  // the address this socket's local end is bound to, e.g. "10.0.0.2"

enum class IoStatus { Ok, Timeout, Closed, Error };
// Blocking-style whole-buffer transfers on a (blocking or not) socket, bounded by the deadline.
// On Error, *err_no holds errno.
IoStatus send_all(int fd, const void* p, size_t n, Deadline deadline, int* err_no);
IoStatus recv_all(int fd, void* p, size_t n, Deadline deadline, int* err_no);

// "30s", "1.5s", "250 ms": durations as they read best in error messages.
std::string format_duration(std::chrono::milliseconds d);

}  // namespace rg::dist::net
