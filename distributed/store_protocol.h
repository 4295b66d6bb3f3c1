// The TCPStore's wire protocol (Note [Store protocol]) without sockets: frames, requests decoded from
// and encoded to bytes, and the key-value state each request acts on. tcp_store.cpp's server and
// client speak through it; the tests and fuzz/fuzz_store.cpp feed it bytes directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "distributed/store.h"

namespace rg::dist::wire {

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
// never polls. A connection carries one request at a time; clients keep a small pool of them. A
// frame longer than kMaxFrame, an unknown command or a body too short for its fields makes the
// server drop the connection; bytes after a request's fields are ignored.
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
  Bytes frame() const;  // length prefix + body
};

// Reads a body; `good` turns false on a short message (and every later read returns zeros).
struct Reader {
  const uint8_t* p;
  size_t n;
  bool good = true;
  bool take(void* out, size_t k);
  uint8_t u8();
  uint32_t u32();
  int64_t i64();
  std::string str();
  Bytes bytes();
};

// A decoded request: one key for SET, GET, ADD and DELETE, any number for CHECK and WAIT.
struct Request {
  Cmd cmd = kSet;
  std::vector<std::string> keys;
  Bytes value;          // SET
  int64_t number = 0;   // GET and WAIT: the timeout in ms; ADD: the delta
  bool operator==(const Request&) const = default;
};
// A request's body (command byte and fields; frame() adds the length).
Writer encode_request(const Request& r);
// Decodes a frame's body; nullopt for an unknown command or a body too short for its fields.
std::optional<Request> decode_request(const uint8_t* body, size_t n);

// The first frame of a connection's input `in[0, n)`: Ready with *body_len when it is all there,
// Incomplete while bytes are missing, TooLarge when its length exceeds kMaxFrame.
enum class FrameStatus { Incomplete, Ready, TooLarge };
FrameStatus first_frame(const uint8_t* in, size_t n, uint32_t* body_len);

// The server's keys, and what each request does to them.
class StoreState {
 public:
  struct Outcome {
    bool waits = false;  // GET/WAIT of a missing key: the request waits (parked by the server)
    Bytes reply;         // the reply body, unless it waits
    bool changed = false;  // SET or ADD: a waiting request may now be answered
  };
  Outcome apply(const Request& r);
  std::vector<std::string> missing(const std::vector<std::string>& keys) const;
  // The reply to a GET or WAIT that waited: the value (GET) or success once its keys exist, else the
  // timeout (WAIT: naming the keys still missing).
  Bytes waited_reply(bool is_get, const std::vector<std::string>& keys, bool timed_out) const;
  size_t size() const { return data_.size(); }

 private:
  std::unordered_map<std::string, Bytes> data_;
};

// When a request that waits from `now` with `timeout_ms` times out (a negative timeout is 0, one past
// the clock's end is its end).
std::chrono::steady_clock::time_point wait_deadline(std::chrono::steady_clock::time_point now, int64_t timeout_ms);

}  // namespace rg::dist::wire
