// The store's wire protocol and key-value state (Note [Store protocol] in store_protocol.h).
#include "distributed/store_protocol.h"

#include <algorithm>
#include <cstdlib>

namespace rg::dist::wire {

Bytes Writer::frame() const {
  Bytes f(4 + b.size());
  const uint32_t n = static_cast<uint32_t>(b.size());
  std::memcpy(f.data(), &n, 4);
  if (!b.empty()) std::memcpy(f.data() + 4, b.data(), b.size());
  return f;
}

bool Reader::take(void* out, size_t k) {
  if (!good || k > n) return good = false;
  if (k) std::memcpy(out, p, k);
  p += k;
  n -= k;
  return true;
}
uint8_t Reader::u8() {
  uint8_t v = 0;
  take(&v, 1);
  return v;
}
uint32_t Reader::u32() {
  uint32_t v = 0;
  take(&v, 4);
  return v;
}
int64_t Reader::i64() {
  int64_t v = 0;
  take(&v, 8);
  return v;
}
std::string Reader::str() {
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
Bytes Reader::bytes() {
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

Writer encode_request(const Request& r) {
  Writer w;
  w.u8(r.cmd);
  switch (r.cmd) {
    case kSet:
      w.str(r.keys.at(0));
      w.bytes(r.value);
      break;
    case kGet:
    case kAdd:
      w.str(r.keys.at(0));
      w.i64(r.number);
      break;
    case kCheck:
    case kWait:
      w.u32(static_cast<uint32_t>(r.keys.size()));
      for (const auto& k : r.keys) w.str(k);
      if (r.cmd == kWait) w.i64(r.number);
      break;
    case kDelete: w.str(r.keys.at(0)); break;
  }
  return w;
}

std::optional<Request> decode_request(const uint8_t* body, size_t n) {
  Reader in{body, n};
  Request r;
  const uint8_t cmd = in.u8();
  if (!in.good || cmd < kSet || cmd > kDelete) return std::nullopt;
  r.cmd = static_cast<Cmd>(cmd);
  switch (r.cmd) {
    case kSet:
      r.keys.push_back(in.str());
      r.value = in.bytes();
      break;
    case kGet:
    case kAdd:
      r.keys.push_back(in.str());
      r.number = in.i64();
      break;
    case kCheck:
    case kWait: {
      const uint32_t k = in.u32();
      for (uint32_t i = 0; i < k && in.good; ++i) r.keys.push_back(in.str());
      if (r.cmd == kWait) r.number = in.i64();
      break;
    }
    case kDelete: r.keys.push_back(in.str()); break;
  }
  if (!in.good) return std::nullopt;
  return r;
}

FrameStatus first_frame(const uint8_t* in, size_t n, uint32_t* body_len) {
  if (n < 4) return FrameStatus::Incomplete;
  uint32_t len;
  std::memcpy(&len, in, 4);
  if (len > kMaxFrame) return FrameStatus::TooLarge;
  if (n < 4 + static_cast<size_t>(len)) return FrameStatus::Incomplete;
  *body_len = len;
  return FrameStatus::Ready;
}

std::vector<std::string> StoreState::missing(const std::vector<std::string>& keys) const {
  std::vector<std::string> m;
  for (const auto& k : keys) {
    if (!data_.count(k)) m.push_back(k);
  }
  return m;
}

StoreState::Outcome StoreState::apply(const Request& r) {
  Outcome out;
  Writer w;
  switch (r.cmd) {
    case kSet:
      data_[r.keys[0]] = r.value;
      w.u8(0);
      out.changed = true;
      break;
    case kGet: {
      auto it = data_.find(r.keys[0]);
      if (it == data_.end()) {
        out.waits = true;
        return out;
      }
      w.u8(0);
      w.bytes(it->second);
      break;
    }
    case kAdd: {
      int64_t v = 0;
      auto it = data_.find(r.keys[0]);
      if (it != data_.end()) v = std::strtoll(std::string(it->second.begin(), it->second.end()).c_str(), nullptr, 10);
      v = static_cast<int64_t>(static_cast<uint64_t>(v) + static_cast<uint64_t>(r.number));  // wraps, never UB
      const std::string s = std::to_string(v);
      data_[r.keys[0]] = Bytes(s.begin(), s.end());
      w.i64(v);
      out.changed = true;
      break;
    }
    case kCheck: w.u8(missing(r.keys).empty() ? 1 : 0); break;
    case kWait:
      if (!missing(r.keys).empty()) {
        out.waits = true;
        return out;
      }
      w.u8(0);
      break;
    case kDelete: w.u8(data_.erase(r.keys[0]) ? 1 : 0); break;
  }
  out.reply = std::move(w.b);
  return out;
}

Bytes StoreState::waited_reply(bool is_get, const std::vector<std::string>& keys, bool timed_out) const {
  Writer w;
  if (!timed_out) {
    w.u8(0);
    if (is_get) w.bytes(data_.at(keys[0]));
  } else {
    w.u8(1);
    if (!is_get) {
      const auto m = missing(keys);
      w.u32(static_cast<uint32_t>(m.size()));
      for (const auto& k : m) w.str(k);
    }
  }
  return std::move(w.b);
}

std::chrono::steady_clock::time_point wait_deadline(std::chrono::steady_clock::time_point now, int64_t timeout_ms) {
  // A client may send any i64: the timeout saturates where the clock ends (an overflow found by fuzz_store).
  const int64_t room = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::time_point::max() - now).count();
  return now + std::chrono::milliseconds(std::clamp<int64_t>(timeout_ms, 0, room));
}

}  // namespace rg::dist::wire
