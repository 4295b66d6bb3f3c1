// The CPU ring's byte transports: each rank streams bytes to its right neighbour and from its
// left one, over TCP sockets (between hosts) or shared-memory ring buffers (on one host).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "distributed/store.h"

namespace rg::dist::detail {

using Deadline = std::chrono::steady_clock::time_point;

// A broken link: the peer closed its end, reset it, or died. Names the peer; the ring adds the
// collective and this rank.
class LinkError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Note [Ring link]
// Two one-way byte streams: to next = (rank + 1) % size and from prev = (rank - 1 + size) % size.
// Both calls are non-blocking and return how many bytes moved (0: would block); bytes handed to
// try_send may be reused at once. wait() blocks until one of the wanted directions can move, the
// deadline passes (returns false), or `abort` turns true (checked at least every 100 ms). A broken
// connection or a dead peer throws LinkError. Only the group's worker thread uses a link.
class RingLink {
 public:
  virtual ~RingLink() = default;
  virtual size_t try_send(const void* p, size_t n) = 0;
  virtual size_t try_recv(void* p, size_t n) = 0;
  virtual bool wait(bool want_send, bool want_recv, Deadline deadline, const std::atomic<bool>& abort) = 0;
  virtual const char* kind() const = 0;  // "tcp" or "shm"

  // Reading in place (shm only; zero_copy() says): peek returns the readable bytes at the head of
  // the incoming stream that are contiguous in memory (*n of them, possibly 0); release(n) frees
  // the first n. Padding: the bytes that bring the sent / received stream position to a multiple
  // of `a` (Note [Shm stream alignment] in ring_cpu.cpp).
  virtual bool zero_copy() const { return false; }
  virtual const char* peek(size_t* n) {
    *n = 0;
    return nullptr;
  }
  virtual void release(size_t /*n*/) {}
  virtual size_t send_pad(size_t /*a*/) const { return 0; }
  virtual size_t recv_pad(size_t /*a*/) const { return 0; }
};

// Both connect through the store (keys under "ring/"), blocking up to `timeout`.
std::unique_ptr<RingLink> connect_tcp_ring(Store& store, int rank, int size, Millis timeout);
std::unique_ptr<RingLink> connect_shm_ring(Store& store, int rank, int size, Millis timeout);

// This host's identity for choosing shm: hostname + kernel boot id.
std::string host_identity();

}  // namespace rg::dist::detail
