// TCPStore: a key-value server on one poll() thread (rank 0) and its clients, speaking a small
// length-prefixed protocol (Note [Store protocol] in store_protocol.h); and PrefixStore.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "distributed/socket_util.h"
#include "distributed/store.h"
#include "distributed/store_protocol.h"

namespace rg::dist {

using net::Clock;
using net::Fd;

namespace {

using wire::Reader;
using wire::Writer;
using wire::kMaxFrame;

std::string join_keys(const std::vector<std::string>& keys) {
  std::string s;
  for (size_t i = 0; i < keys.size(); ++i) s += (i ? ", " : "") + keys[i];
  return s;
}

// ---- the server

class StoreServer {
 public:
  StoreServer(Fd listen_fd, int port) : listen_(std::move(listen_fd)), port_(port) {
    int fds[2];
    RG_CHECK(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0, "TCPStore: pipe: ", net::errno_str(errno));
    wake_r_ = Fd(fds[0]);
    wake_w_ = Fd(fds[1]);
    net::set_nonblocking(listen_.get(), true);
    thread_ = std::thread([this] { loop(); });
  }
  ~StoreServer() {
    const char c = 1;
    [[maybe_unused]] const ssize_t k = ::write(wake_w_.get(), &c, 1);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  struct Conn {
    Fd fd;
    Bytes in;
    Bytes out;
    size_t out_off = 0;
    bool blocked = false;  // a GET/WAIT is parked for this connection
  };
  struct Waiter {
    int fd;
    bool is_get;
    std::vector<std::string> keys;
    Clock::time_point deadline;
  };

  void loop() {
    for (;;) {
      std::vector<pollfd> pfds;
      pfds.push_back({wake_r_.get(), POLLIN, 0});
      pfds.push_back({listen_.get(), POLLIN, 0});
      for (auto& [fd, c] : conns_) {
        short ev = c.blocked ? 0 : POLLIN;
        if (c.out_off < c.out.size()) ev |= POLLOUT;
        pfds.push_back({fd, ev, 0});
      }
      int timeout_ms = -1;
      if (!waiters_.empty()) {
        auto first = std::min_element(waiters_.begin(), waiters_.end(),
                                      [](const Waiter& a, const Waiter& b) { return a.deadline < b.deadline; })
                         ->deadline;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(first - Clock::now()).count();
        timeout_ms = static_cast<int>(std::clamp<int64_t>(left + 1, 0, 1 << 30));
      }
      const int pr = ::poll(pfds.data(), pfds.size(), timeout_ms);
      if (pr < 0 && errno != EINTR) return;
      if (pfds[0].revents) return;  // shutdown
      if (pfds[1].revents & POLLIN) accept_all();
      for (size_t i = 2; i < pfds.size(); ++i) {
        const int fd = pfds[i].fd;
        auto it = conns_.find(fd);
        if (it == conns_.end()) continue;
        bool ok = true;
        if (pfds[i].revents & (POLLERR | POLLNVAL)) ok = false;
        if (ok && (pfds[i].revents & (POLLIN | POLLHUP))) ok = read_from(it->second);
        if (ok && (pfds[i].revents & POLLOUT)) ok = flush(it->second);
        if (!ok) drop(fd);
      }
      expire_waiters();
    }
  }

  void accept_all() {
    for (;;) {
      const int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) return;
      net::set_nodelay(fd);
      conns_[fd].fd = Fd(fd);
    }
  }

  void drop(int fd) {
    waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(), [&](const Waiter& w) { return w.fd == fd; }),
                   waiters_.end());
    conns_.erase(fd);
  }

  // Reads what is available and serves every complete request; false when the peer is gone.
  bool read_from(Conn& c) {
    uint8_t buf[65536];
    for (;;) {
      const ssize_t k = ::recv(c.fd.get(), buf, sizeof buf, 0);
      if (k > 0) {
        c.in.insert(c.in.end(), buf, buf + k);
        if (static_cast<size_t>(k) < sizeof buf) break;
        continue;
      }
      if (k == 0) return false;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return false;
    }
    while (!c.blocked) {
      uint32_t len = 0;
      const wire::FrameStatus st = wire::first_frame(c.in.data(), c.in.size(), &len);
      if (st == wire::FrameStatus::TooLarge) return false;
      if (st == wire::FrameStatus::Incomplete) break;
      Bytes body(c.in.begin() + 4, c.in.begin() + 4 + len);
      c.in.erase(c.in.begin(), c.in.begin() + 4 + len);
      if (!serve(c, body)) return false;
    }
    return flush(c);
  }

  bool flush(Conn& c) {
    while (c.out_off < c.out.size()) {
      const ssize_t k = ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (k > 0) {
        c.out_off += static_cast<size_t>(k);
        continue;
      }
      if (k < 0 && errno == EINTR) continue;
      if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      return false;
    }
    c.out.clear();
    c.out_off = 0;
    return true;
  }

  void reply(Conn& c, Bytes body) {
    const Bytes f = Writer{std::move(body)}.frame();
    c.out.insert(c.out.end(), f.begin(), f.end());
  }

  // Serves one request body; false when it is malformed (the connection is then dropped).
  bool serve(Conn& c, const Bytes& body) {
    const std::optional<wire::Request> r = wire::decode_request(body.data(), body.size());
    if (!r) return false;
    wire::StoreState::Outcome out = state_.apply(*r);
    if (out.waits) {
      park(c, r->cmd == wire::kGet, r->keys, r->number);
      return true;
    }
    reply(c, std::move(out.reply));
    if (out.changed) key_changed();
    return true;
  }

  void park(Conn& c, bool is_get, std::vector<std::string> keys, int64_t timeout_ms) {
    c.blocked = true;
    const auto deadline = wire::wait_deadline(Clock::now(), timeout_ms);
    waiters_.push_back({c.fd.get(), is_get, std::move(keys), deadline});
  }

  // Answers a parked request; timed_out decides between the value and the timeout reply.
  void answer(const Waiter& wt, bool timed_out) {
    auto it = conns_.find(wt.fd);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    reply(c, state_.waited_reply(wt.is_get, wt.keys, timed_out));
    c.blocked = false;
    if (!flush(c)) {
      drop(wt.fd);
      return;
    }
    // Requests that arrived behind the parked one (none from our clients) are served later.
  }

  void key_changed() {
    std::vector<Waiter> done;
    auto keep = std::remove_if(waiters_.begin(), waiters_.end(), [&](const Waiter& w) {
      if (!state_.missing(w.keys).empty()) return false;
      done.push_back(w);
      return true;
    });
    waiters_.erase(keep, waiters_.end());
    for (const auto& w : done) answer(w, false);
  }

  void expire_waiters() {
    const auto now = Clock::now();
    std::vector<Waiter> late;
    auto keep = std::remove_if(waiters_.begin(), waiters_.end(), [&](const Waiter& w) {
      if (w.deadline > now) return false;
      late.push_back(w);
      return true;
    });
    waiters_.erase(keep, waiters_.end());
    for (const auto& w : late) answer(w, !state_.missing(w.keys).empty());
  }

  Fd listen_;
  int port_;
  Fd wake_r_, wake_w_;
  std::thread thread_;
  std::map<int, Conn> conns_;
  std::vector<Waiter> waiters_;
  wire::StoreState state_;
};

}  // namespace

// ---- the client

struct TCPStore::Impl {
  std::string host;
  int port = 0;
  std::unique_ptr<StoreServer> server;
  std::mutex mu;
  std::vector<Fd> pool;  // idle connections
  std::string local_ip;

  Fd connect(Millis timeout) {
    std::string err;
    Fd fd = net::connect_tcp(host, port, Clock::now() + timeout, &err);
    RG_CHECK(fd.valid(), "TCPStore: could not connect to ", host, ":", port, " within ",
             net::format_duration(timeout), " (", err, ")");
    return fd;
  }

  // One request/response on a pooled connection. reply_wait bounds how long the server may take.
  Bytes request(const Writer& w, Millis connect_timeout, Millis reply_wait) {
    Fd fd;
    {
      std::lock_guard<std::mutex> g(mu);
      if (!pool.empty()) {
        fd = std::move(pool.back());
        pool.pop_back();
      }
    }
    if (!fd.valid()) fd = connect(connect_timeout);
    const Bytes frame = w.frame();
    int e = 0;
    // The server answers a blocked GET/WAIT at its timeout; allow it a generous margin beyond that.
    const auto deadline = Clock::now() + reply_wait + std::chrono::seconds(30);
    auto st = net::send_all(fd.get(), frame.data(), frame.size(), deadline, &e);
    uint32_t len = 0;
    if (st == net::IoStatus::Ok) st = net::recv_all(fd.get(), &len, 4, deadline, &e);
    Bytes body;
    if (st == net::IoStatus::Ok) {
      RG_CHECK(len <= kMaxFrame, "TCPStore: corrupt reply from ", host, ":", port);
      body.resize(len);
      st = net::recv_all(fd.get(), body.data(), len, deadline, &e);
    }
    switch (st) {
      case net::IoStatus::Ok: break;
      case net::IoStatus::Timeout:
        RG_THROW("TCPStore: no reply from the store at ", host, ":", port, " within ",
                 net::format_duration(std::chrono::duration_cast<Millis>(reply_wait + std::chrono::seconds(30))));
      case net::IoStatus::Closed:
        RG_THROW("TCPStore: lost the connection to the store at ", host, ":", port,
                 " (the server, run by rank 0, has exited?)");
      case net::IoStatus::Error: RG_THROW("TCPStore: talking to ", host, ":", port, ": ", net::errno_str(e));
    }
    std::lock_guard<std::mutex> g(mu);
    pool.push_back(std::move(fd));
    return body;
  }
};

// expected_clients is accepted for torch's signature and not used: clients are not counted,
// rendezvous waits on keys instead.
TCPStore::TCPStore(const std::string& host, int port, bool is_server, Millis timeout, int /*expected_clients*/)
    : impl_(std::make_unique<Impl>()) {
  timeout_ = timeout;
  impl_->host = host;
  impl_->port = port;
  if (is_server) {
    std::string err;
    int bound = 0;
    Fd fd = net::listen_tcp(port, 1024, &bound, &err);
    if (!fd.valid()) {
      if (err.find(net::errno_str(EADDRINUSE)) != std::string::npos) {
        RG_THROW("TCPStore: port ", port, " is already in use (", err, ")");
      }
      RG_THROW("TCPStore: could not listen on port ", port, " (", err, ")");
    }
    impl_->server = std::make_unique<StoreServer>(std::move(fd), bound);
    impl_->port = bound;
  }
  // Connect eagerly, as torch does: an unreachable store fails here, naming the address.
  Fd first = impl_->connect(timeout);
  impl_->local_ip = net::local_ip(first.get());
  impl_->pool.push_back(std::move(first));
}

TCPStore::~TCPStore() {
  impl_->pool.clear();
  impl_->server.reset();
}

int TCPStore::port() const { return impl_->port; }
std::string TCPStore::local_address() const { return impl_->local_ip; }

void TCPStore::set(const std::string& key, const Bytes& value) {
  impl_->request(wire::encode_request({wire::kSet, {key}, value, 0}), timeout_, Millis(0));
}

Bytes TCPStore::get(const std::string& key) {
  const Bytes body = impl_->request(wire::encode_request({wire::kGet, {key}, {}, timeout_.count()}), timeout_, timeout_);
  Reader r{body.data(), body.size()};
  const uint8_t status = r.u8();
  RG_CHECK(r.good, "TCPStore: corrupt reply to get(", key, ")");
  RG_CHECK(status == 0, "TCPStore: get timed out after ", timeout_.count(), " ms for key: ", key);
  Bytes v = r.bytes();
  RG_CHECK(r.good, "TCPStore: corrupt reply to get(", key, ")");
  return v;
}

int64_t TCPStore::add(const std::string& key, int64_t delta) {
  const Bytes body = impl_->request(wire::encode_request({wire::kAdd, {key}, {}, delta}), timeout_, Millis(0));
  Reader r{body.data(), body.size()};
  const int64_t v = r.i64();
  RG_CHECK(r.good, "TCPStore: corrupt reply to add(", key, ")");
  return v;
}

bool TCPStore::check(const std::vector<std::string>& keys) {
  const Bytes body = impl_->request(wire::encode_request({wire::kCheck, keys, {}, 0}), timeout_, Millis(0));
  Reader r{body.data(), body.size()};
  const uint8_t v = r.u8();
  RG_CHECK(r.good, "TCPStore: corrupt reply to check");
  return v != 0;
}

void TCPStore::wait(const std::vector<std::string>& keys, Millis timeout) {
  const Bytes body = impl_->request(wire::encode_request({wire::kWait, keys, {}, timeout.count()}), timeout_, timeout);
  Reader r{body.data(), body.size()};
  const uint8_t status = r.u8();
  RG_CHECK(r.good, "TCPStore: corrupt reply to wait");
  if (status == 0) return;
  std::vector<std::string> missing;
  const uint32_t n = r.u32();
  for (uint32_t i = 0; i < n && r.good; ++i) missing.push_back(r.str());
  RG_THROW("TCPStore: wait timed out after ", timeout.count(), " ms for keys: ", join_keys(missing));
}

bool TCPStore::delete_key(const std::string& key) {
  const Bytes body = impl_->request(wire::encode_request({wire::kDelete, {key}, {}, 0}), timeout_, Millis(0));
  Reader r{body.data(), body.size()};
  const uint8_t v = r.u8();
  RG_CHECK(r.good, "TCPStore: corrupt reply to delete_key(", key, ")");
  return v != 0;
}

// ---- PrefixStore

PrefixStore::PrefixStore(std::string prefix, std::shared_ptr<Store> base)
    : prefix_(std::move(prefix)), base_(std::move(base)) {
  RG_CHECK(base_ != nullptr, "PrefixStore: base store is null");
  timeout_ = base_->timeout();
}

void PrefixStore::set(const std::string& key, const Bytes& value) { base_->set(prefix_ + key, value); }

Bytes PrefixStore::get(const std::string& key) {
  if (timeout_ != base_->timeout()) base_->wait({prefix_ + key}, timeout_);
  return base_->get(prefix_ + key);
}

int64_t PrefixStore::add(const std::string& key, int64_t delta) { return base_->add(prefix_ + key, delta); }

bool PrefixStore::check(const std::vector<std::string>& keys) {
  std::vector<std::string> k;
  for (const auto& s : keys) k.push_back(prefix_ + s);
  return base_->check(k);
}

void PrefixStore::wait(const std::vector<std::string>& keys, Millis timeout) {
  std::vector<std::string> k;
  for (const auto& s : keys) k.push_back(prefix_ + s);
  base_->wait(k, timeout);
}

bool PrefixStore::delete_key(const std::string& key) { return base_->delete_key(prefix_ + key); }

}  // namespace rg::dist
