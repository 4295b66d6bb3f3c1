// TCPStore: a key-value server on one poll() thread (rank 0) and its clients, speaking a small
// length-prefixed protocol (Note [Store protocol]); and PrefixStore.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "distributed/socket_util.h"
#include "distributed/store.h"

namespace rg::dist {

using net::Clock;
using net::Fd;

// Note [Store protocol]
// Request:  u32 length (of what follows) | u8 command | body.   Reply: u32 length | body.
// Strings are u32 length + bytes, integers little-endian (all hosts we run on are).
//   SET    key value           -> u8 0
//   GET    key i64 timeout_ms  -> u8 0 value | u8 1 (timed out)
//   ADD    key i64 delta       -> i64 new value
//   CHECK  u32 n keys...       -> u8 all present
//   WAIT   u32 n keys... i64 timeout_ms -> u8 0 | u8 1 u32 n missing-keys...
//   DELETE key                 -> u8 existed
// GET and WAIT block on the server until the keys exist or the timeout passes, so a client
// never polls. A connection carries one request at a time; clients keep a small pool of them.
namespace {

enum Cmd : uint8_t { kSet = 1, kGet, kAdd, kCheck, kWait, kDelete };
constexpr uint32_t kMaxFrame = 1u << 30;

struct Writer {
  Bytes b;
  void u8(uint8_t v) { b.push_back(v); }
  void u32(uint32_t v) { raw(&v, 4); }
  void i64(int64_t v) { raw(&v, 8); }
  void str(const std::string& s) {
    u32(static_cast<uint32_t>(s.size()));
    raw(s.data(), s.size());
  }
  void bytes(const Bytes& v) {
    u32(static_cast<uint32_t>(v.size()));
    raw(v.data(), v.size());
  }
  void raw(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
  }
  Bytes frame() const {  // length prefix + body
    Bytes f(4 + b.size());
    const uint32_t n = static_cast<uint32_t>(b.size());
    std::memcpy(f.data(), &n, 4);
    if (!b.empty()) std::memcpy(f.data() + 4, b.data(), b.size());
    return f;
  }
};

// Reads a body; ok() turns false on a short or malformed message.
struct Reader {
  const uint8_t* p;
  size_t n;
  bool good = true;
  bool take(void* out, size_t k) {
    if (!good || k > n) return good = false;
    if (k) std::memcpy(out, p, k);
    p += k;
    n -= k;
    return true;
  }
  uint8_t u8() {
    uint8_t v = 0;
    take(&v, 1);
    return v;
  }
  uint32_t u32() {
    uint32_t v = 0;
    take(&v, 4);
    return v;
  }
  int64_t i64() {
    int64_t v = 0;
    take(&v, 8);
    return v;
  }
  std::string str() {
    const uint32_t k = u32();
    if (!good || k > n) {
      good = false;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(p), k);
    p += k;
    n -= k;
    return s;
  }
  Bytes bytes() {
    const uint32_t k = u32();
    if (!good || k > n) {
      good = false;
      return {};
    }
    Bytes v(p, p + k);
    p += k;
    n -= k;
    return v;
  }
};

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
    while (!c.blocked && c.in.size() >= 4) {
      uint32_t len;
      std::memcpy(&len, c.in.data(), 4);
      if (len > kMaxFrame) return false;
      if (c.in.size() < 4 + static_cast<size_t>(len)) break;
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

  void reply(Conn& c, const Writer& w) {
    const Bytes f = w.frame();
    c.out.insert(c.out.end(), f.begin(), f.end());
  }

  bool serve(Conn& c, const Bytes& body) {
    Reader r{body.data(), body.size()};
    const uint8_t cmd = r.u8();
    Writer w;
    switch (cmd) {
      case kSet: {
        std::string key = r.str();
        Bytes value = r.bytes();
        if (!r.good) return false;
        data_[key] = std::move(value);
        w.u8(0);
        reply(c, w);
        key_changed();
        return true;
      }
      case kGet: {
        std::string key = r.str();
        const int64_t timeout_ms = r.i64();
        if (!r.good) return false;
        auto it = data_.find(key);
        if (it != data_.end()) {
          w.u8(0);
          w.bytes(it->second);
          reply(c, w);
        } else {
          park(c, true, {std::move(key)}, timeout_ms);
        }
        return true;
      }
      case kAdd: {
        const std::string key = r.str();
        const int64_t delta = r.i64();
        if (!r.good) return false;
        int64_t v = 0;
        auto it = data_.find(key);
        if (it != data_.end()) v = std::strtoll(std::string(it->second.begin(), it->second.end()).c_str(), nullptr, 10);
        v += delta;
        const std::string s = std::to_string(v);
        data_[key] = Bytes(s.begin(), s.end());
        w.i64(v);
        reply(c, w);
        key_changed();
        return true;
      }
      case kCheck: {
        const uint32_t n = r.u32();
        bool all = true;
        for (uint32_t i = 0; i < n && r.good; ++i) all = all && data_.count(r.str()) > 0;
        if (!r.good) return false;
        w.u8(all ? 1 : 0);
        reply(c, w);
        return true;
      }
      case kWait: {
        const uint32_t n = r.u32();
        std::vector<std::string> keys;
        for (uint32_t i = 0; i < n && r.good; ++i) keys.push_back(r.str());
        const int64_t timeout_ms = r.i64();
        if (!r.good) return false;
        if (missing(keys).empty()) {
          w.u8(0);
          reply(c, w);
        } else {
          park(c, false, std::move(keys), timeout_ms);
        }
        return true;
      }
      case kDelete: {
        const std::string key = r.str();
        if (!r.good) return false;
        w.u8(data_.erase(key) ? 1 : 0);
        reply(c, w);
        return true;
      }
      default: return false;
    }
  }

  std::vector<std::string> missing(const std::vector<std::string>& keys) const {
    std::vector<std::string> m;
    for (const auto& k : keys) {
      if (!data_.count(k)) m.push_back(k);
    }
    return m;
  }

  void park(Conn& c, bool is_get, std::vector<std::string> keys, int64_t timeout_ms) {
    c.blocked = true;
    const auto deadline = Clock::now() + std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0));
    waiters_.push_back({c.fd.get(), is_get, std::move(keys), deadline});
  }

  // Answers a parked request; timed_out decides between the value and the timeout reply.
  void answer(const Waiter& wt, bool timed_out) {
    auto it = conns_.find(wt.fd);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    Writer w;
    if (!timed_out) {
      w.u8(0);
      if (wt.is_get) w.bytes(data_.at(wt.keys[0]));
    } else {
      w.u8(1);
      if (!wt.is_get) {
        const auto m = missing(wt.keys);
        w.u32(static_cast<uint32_t>(m.size()));
        for (const auto& k : m) w.str(k);
      }
    }
    reply(c, w);
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
      if (!missing(w.keys).empty()) return false;
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
    for (const auto& w : late) answer(w, !missing(w.keys).empty());
  }

  Fd listen_;
  int port_;
  Fd wake_r_, wake_w_;
  std::thread thread_;
  std::map<int, Conn> conns_;
  std::vector<Waiter> waiters_;
  std::unordered_map<std::string, Bytes> data_;
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
  Writer w;
  w.u8(kSet);
  w.str(key);
  w.bytes(value);
  impl_->request(w, timeout_, Millis(0));
}

Bytes TCPStore::get(const std::string& key) {
  Writer w;
  w.u8(kGet);
  w.str(key);
  w.i64(timeout_.count());
  const Bytes body = impl_->request(w, timeout_, timeout_);
  Reader r{body.data(), body.size()};
  const uint8_t status = r.u8();
  RG_CHECK(r.good, "TCPStore: corrupt reply to get(", key, ")");
  RG_CHECK(status == 0, "TCPStore: get timed out after ", timeout_.count(), " ms for key: ", key);
  Bytes v = r.bytes();
  RG_CHECK(r.good, "TCPStore: corrupt reply to get(", key, ")");
  return v;
}

int64_t TCPStore::add(const std::string& key, int64_t delta) {
  Writer w;
  w.u8(kAdd);
  w.str(key);
  w.i64(delta);
  const Bytes body = impl_->request(w, timeout_, Millis(0));
  Reader r{body.data(), body.size()};
  const int64_t v = r.i64();
  RG_CHECK(r.good, "TCPStore: corrupt reply to add(", key, ")");
  return v;
}

bool TCPStore::check(const std::vector<std::string>& keys) {
  Writer w;
  w.u8(kCheck);
  w.u32(static_cast<uint32_t>(keys.size()));
  for (const auto& k : keys) w.str(k);
  const Bytes body = impl_->request(w, timeout_, Millis(0));
  Reader r{body.data(), body.size()};
  const uint8_t v = r.u8();
  RG_CHECK(r.good, "TCPStore: corrupt reply to check");
  return v != 0;
}

void TCPStore::wait(const std::vector<std::string>& keys, Millis timeout) {
  Writer w;
  w.u8(kWait);
  w.u32(static_cast<uint32_t>(keys.size()));
  for (const auto& k : keys) w.str(k);
  w.i64(timeout.count());
  const Bytes body = impl_->request(w, timeout_, timeout);
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
  Writer w;
  w.u8(kDelete);
  w.str(key);
  const Bytes body = impl_->request(w, timeout_, Millis(0));
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
