// The ring's TCP transport: one socket to the next rank, one from the previous, non-blocking,
// with poll() waits (Note [Ring link] in transport.h).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "distributed/socket_util.h"
#include "distributed/transport.h"

namespace rg::dist::detail {

using net::Fd;

namespace {

constexpr uint32_t kHelloMagic = 0x52475247u;  // "RGRG"

class TcpRingLink final : public RingLink {
 public:
  TcpRingLink(Fd to_next, Fd from_prev, int next, int prev)
      : to_next_(std::move(to_next)), from_prev_(std::move(from_prev)), next_(next), prev_(prev) {
    net::set_nonblocking(to_next_.get(), true);
    net::set_nonblocking(from_prev_.get(), true);
  }

  size_t try_send(const void* p, size_t n) override {
    for (;;) {
      const ssize_t k = ::send(to_next_.get(), p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (k >= 0) return static_cast<size_t>(k);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      if (errno == EPIPE || errno == ECONNRESET) {
        throw LinkError("rank " + std::to_string(next_) + " closed its connection (it exited or crashed)");
      }
      throw LinkError("sending to rank " + std::to_string(next_) + ": " + net::errno_str(errno));
    }
  }

  size_t try_recv(void* p, size_t n) override {
    for (;;) {
      const ssize_t k = ::recv(from_prev_.get(), p, n, MSG_DONTWAIT);
      if (k > 0) return static_cast<size_t>(k);
      if (k == 0) throw LinkError("rank " + std::to_string(prev_) + " closed its connection (it exited or crashed)");
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      if (errno == ECONNRESET) {
        throw LinkError("rank " + std::to_string(prev_) + " reset its connection (it exited or crashed)");
      }
      throw LinkError("receiving from rank " + std::to_string(prev_) + ": " + net::errno_str(errno));
    }
  }

  bool wait(bool want_send, bool want_recv, Deadline deadline, const std::atomic<bool>& abort) override {
    for (;;) {
      if (abort.load()) return false;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return false;
      pollfd p[2];
      int n = 0;
      // A peer that died shows up as POLLIN (EOF) or POLLERR/POLLHUP on the socket we wait on.
      if (want_send) p[n++] = {to_next_.get(), POLLOUT, 0};
      if (want_recv) p[n++] = {from_prev_.get(), POLLIN, 0};
      const int pr = ::poll(p, static_cast<nfds_t>(n), static_cast<int>(std::min<int64_t>(left, 100)));
      if (pr < 0 && errno != EINTR) throw LinkError(std::string("poll: ") + net::errno_str(errno));
      if (pr <= 0) continue;
      for (int i = 0; i < n; ++i) {
        if (p[i].revents & (POLLERR | POLLHUP | POLLNVAL)) return true;  // the next try_* reports it
        if (p[i].revents & (POLLIN | POLLOUT)) return true;
      }
    }
  }

  const char* kind() const override { return "tcp"; }

 private:
  Fd to_next_, from_prev_;
  int next_, prev_;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

}  // namespace

// Each rank listens on a free port and publishes "ip:port" (the interface it reaches the store
// through; RINGGRAD_RING_ADDR overrides), connects to next, then accepts prev, and both sides
// exchange a hello naming their rank.
std::unique_ptr<RingLink> connect_tcp_ring(Store& store, int rank, int size, Millis timeout) {
  const int next = (rank + 1) % size, prev = (rank - 1 + size) % size;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string err;
  int port = 0;
  Fd listener = net::listen_tcp(0, 16, &port, &err);
  RG_CHECK(listener.valid(), "ring (tcp): rank ", rank, " cannot listen: ", err);
  std::string ip = store.local_address();
  if (ip.empty()) ip = "127.0.0.1";
  ip = env_or("RINGGRAD_RING_ADDR", ip);
  store.set("ring/tcp/" + std::to_string(rank), ip + ":" + std::to_string(port));

  const std::string key = "ring/tcp/" + std::to_string(next);
  store.wait({key}, timeout);
  const std::string addr = store.get_string(key);
  const size_t colon = addr.rfind(':');
  RG_CHECK(colon != std::string::npos, "ring (tcp): bad address '", addr, "' published by rank ", next);
  const std::string host = addr.substr(0, colon);
  const int next_port = std::atoi(addr.c_str() + colon + 1);
  Fd to_next = net::connect_tcp(host, next_port, deadline, &err);
  RG_CHECK(to_next.valid(), "ring (tcp): rank ", rank, " could not connect to rank ", next, " at ", addr, " within ",
           net::format_duration(timeout), " (", err, ")");
  int e = 0;
  const uint32_t hello[2] = {kHelloMagic, static_cast<uint32_t>(rank)};
  RG_CHECK(net::send_all(to_next.get(), hello, sizeof hello, deadline, &e) == net::IoStatus::Ok,
           "ring (tcp): rank ", rank, " could not greet rank ", next, " at ", addr);

  Fd from_prev = net::accept_tcp(listener.get(), deadline, &err);
  RG_CHECK(from_prev.valid(), "ring (tcp): rank ", rank, " got no connection from rank ", prev, " within ",
           net::format_duration(timeout), " (", err, ")");
  uint32_t theirs[2] = {0, 0};
  RG_CHECK(net::recv_all(from_prev.get(), theirs, sizeof theirs, deadline, &e) == net::IoStatus::Ok &&
               theirs[0] == kHelloMagic && theirs[1] == static_cast<uint32_t>(prev),
           "ring (tcp): rank ", rank, " expected a hello from rank ", prev, " and got something else");
  return std::make_unique<TcpRingLink>(std::move(to_next), std::move(from_prev), next, prev);
}

}  // namespace rg::dist::detail
