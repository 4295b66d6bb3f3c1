// The key-value store that carries rendezvous and out-of-band exchanges: a TCP server run by
// rank 0 (TCPStore), and PrefixStore to give each process group its own key space.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rg::dist {

using Bytes = std::vector<uint8_t>;
using Millis = std::chrono::milliseconds;
inline constexpr Millis kDefaultTimeout{5 * 60 * 1000};  // torch.distributed's default, 5 minutes

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const Bytes& value) = 0;
  // Waits (up to timeout()) for the key to exist, then returns its value.
  virtual Bytes get(const std::string& key) = 0;
  // Atomically adds delta to the integer stored at key (0 when absent) and returns the new value.
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
  // True when every key exists (no waiting).
  virtual bool check(const std::vector<std::string>& keys) = 0;
  // Waits until every key exists; throws rg::Error naming the missing keys on timeout.
  virtual void wait(const std::vector<std::string>& keys, Millis timeout) = 0;
  void wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }
  virtual bool delete_key(const std::string& key) = 0;

  void set(const std::string& key, const std::string& value) { set(key, Bytes(value.begin(), value.end())); }
  std::string get_string(const std::string& key) {
    const Bytes b = get(key);
    return std::string(b.begin(), b.end());
  }
  Millis timeout() const { return timeout_; }
  void set_timeout(Millis t) { timeout_ = t; }
  // The IP address this process uses to reach the store ("" when unknown): the interface other
  // hosts can reach it on, which the TCP ring transport publishes for its peers.
  virtual std::string local_address() const { return ""; }

 protected:
  Millis timeout_ = kDefaultTimeout;
};

// Rank 0 (is_server) serves the store on host:port from a background thread; every rank,
// rank 0 included, is a client. Binding a port already in use raises an error naming the port.
// port 0 on the server picks a free port (see port()).
class TCPStore : public Store {
 public:
  TCPStore(const std::string& host, int port, bool is_server, Millis timeout = kDefaultTimeout,
           int expected_clients = -1);
  ~TCPStore() override;
  void set(const std::string& key, const Bytes& value) override;
  Bytes get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  bool check(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, Millis timeout) override;
  bool delete_key(const std::string& key) override;
  using Store::set;
  using Store::wait;
  int port() const;
  std::string local_address() const override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

class PrefixStore : public Store {
 public:
  PrefixStore(std::string prefix, std::shared_ptr<Store> base);
  void set(const std::string& key, const Bytes& value) override;
  Bytes get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  bool check(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, Millis timeout) override;
  bool delete_key(const std::string& key) override;
  using Store::set;
  using Store::wait;
  std::string local_address() const override { return base_->local_address(); }

 private:
  std::string prefix_;
  std::shared_ptr<Store> base_;
};

}  // namespace rg::dist
