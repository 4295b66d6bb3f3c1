// POSIX socket helpers for the store and the TCP ring transport (see socket_util.h).
#include "distributed/socket_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

namespace rg::dist::net {

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string errno_str(int err) {
  char buf[256];
  // GNU strerror_r returns the message (possibly not in buf).
  return std::string(strerror_r(err, buf, sizeof buf));
}

namespace {

int ms_until(Deadline d) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(d - Clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

// Resolves host to an IPv4 address; false with *err set on failure.
bool resolve(const std::string& host, int port, sockaddr_in* out, std::string* err) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    *err = "cannot resolve '" + host + "': " + gai_strerror(rc);
    return false;
  }
  std::memcpy(out, res->ai_addr, sizeof(sockaddr_in));
  freeaddrinfo(res);
  return true;
}

}  // namespace

Fd listen_tcp(int port, int backlog, int* bound_port, std::string* err) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    *err = "socket: " + errno_str(errno);
    return Fd();
  }
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // rebind over TIME_WAIT, not over a listener
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    *err = "bind: " + errno_str(errno);
    return Fd();
  }
  if (::listen(fd.get(), backlog) != 0) {
    *err = "listen: " + errno_str(errno);
    return Fd();
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  if (bound_port) *bound_port = ntohs(addr.sin_port);
  return fd;
}

Fd connect_tcp(const std::string& host, int port, Deadline deadline, std::string* err) {
  int backoff_ms = 10;
  for (;;) {
    sockaddr_in addr{};
    if (resolve(host, port, &addr, err)) {
      Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (!fd.valid()) {
        *err = "socket: " + errno_str(errno);
        return Fd();
      }
      set_nonblocking(fd.get(), true);
      int rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      int e = rc == 0 ? 0 : errno;
      if (rc != 0 && e == EINPROGRESS) {
        pollfd p{fd.get(), POLLOUT, 0};
        const int pr = ::poll(&p, 1, std::max(1, ms_until(deadline)));
        if (pr == 1) {
          socklen_t len = sizeof e;
          ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &e, &len);
        } else {
          e = ETIMEDOUT;
        }
      }
      if (e == 0) {
        set_nonblocking(fd.get(), false);
        set_nodelay(fd.get());
        return fd;
      }
      *err = "connect: " + errno_str(e);
    }
    if (Clock::now() >= deadline) return Fd();
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(backoff_ms, std::max(1, ms_until(deadline)))));
    backoff_ms = std::min(backoff_ms * 2, 500);
  }
}

Fd accept_tcp(int listen_fd, Deadline deadline, std::string* err) {
  for (;;) {
    pollfd p{listen_fd, POLLIN, 0};
    const int pr = ::poll(&p, 1, ms_until(deadline));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) {
      *err = pr == 0 ? "no connection before the deadline" : "poll: " + errno_str(errno);
      return Fd();
    }
    Fd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
    if (fd.valid()) {
      set_nodelay(fd.get());
      return fd;
    }
    if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
      *err = "accept: " + errno_str(errno);
      return Fd();
    }
  }
}

void set_nonblocking(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  ::fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
}

void set_nodelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::string local_ip(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || addr.sin_family != AF_INET) return "";
  char buf[INET_ADDRSTRLEN];
  return ::inet_ntop(AF_INET, &addr.sin_addr, buf, sizeof buf) ? std::string(buf) : std::string();
}

IoStatus send_all(int fd, const void* p, size_t n, Deadline deadline, int* err_no) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t k = ::send(fd, c, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k > 0) {
      c += k;
      n -= static_cast<size_t>(k);
      continue;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pf{fd, POLLOUT, 0};
      const int pr = ::poll(&pf, 1, ms_until(deadline));
      if (pr == 0) return IoStatus::Timeout;
      continue;
    }
    *err_no = errno;
    return (errno == EPIPE || errno == ECONNRESET) ? IoStatus::Closed : IoStatus::Error;
  }
  return IoStatus::Ok;
}

IoStatus recv_all(int fd, void* p, size_t n, Deadline deadline, int* err_no) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t k = ::recv(fd, c, n, MSG_DONTWAIT);
    if (k > 0) {
      c += k;
      n -= static_cast<size_t>(k);
      continue;
    }
    if (k == 0) return IoStatus::Closed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd pf{fd, POLLIN, 0};
      const int pr = ::poll(&pf, 1, ms_until(deadline));
      if (pr == 0) return IoStatus::Timeout;
      continue;
    }
    *err_no = errno;
    return errno == ECONNRESET ? IoStatus::Closed : IoStatus::Error;
  }
  return IoStatus::Ok;
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms < 1000) return std::to_string(ms) + " ms";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
  return buf;
}

}  // namespace rg::dist::net
