// Fuzzes the store's wire protocol (distributed/store_protocol.cpp) as the server meets it: the input
// is what one connection sends, split into frames and requests as the server does, each request
// applied to the store's state. Checked against a plain map of the same keys: every reply, which
// requests wait, what a timed-out wait names; and each decoded request re-encodes to the bytes it
// came from (a prefix of its body; shorter bodies do not decode).
#include <charconv>
#include <chrono>
#include <cstring>
#include <map>

#include "distributed/store_protocol.h"
#include "fuzz/fuzz_util.h"

namespace {
namespace wire = rg::dist::wire;
using rg::dist::Bytes;

Bytes u8_reply(uint8_t v) { return {v}; }

void check_request(const uint8_t* body, size_t n, const wire::Request& r) {
  const Bytes enc = wire::encode_request(r).b;
  RG_FUZZ_CHECK(enc.size() <= n && std::memcmp(enc.data(), body, enc.size()) == 0, "re-encoding differs from the body");
  RG_FUZZ_CHECK(!wire::decode_request(enc.data(), enc.size() - 1), "a body one byte short decodes");
  const auto again = wire::decode_request(enc.data(), enc.size());
  RG_FUZZ_CHECK(again && *again == r, "the re-encoded request decodes differently");
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  wire::StoreState state;
  std::map<std::string, Bytes> model;
  size_t at = 0;
  for (;;) {
    uint32_t len = 0;
    const wire::FrameStatus st = wire::first_frame(data + at, size - at, &len);
    if (st != wire::FrameStatus::Ready) {
      RG_FUZZ_CHECK(st == wire::FrameStatus::Incomplete || len == 0, "length");
      break;
    }
    const uint8_t* body = data + at + 4;
    at += 4 + static_cast<size_t>(len);
    const std::optional<wire::Request> r = wire::decode_request(body, len);
    if (!r) break;  // the server drops the connection
    check_request(body, len, *r);
    std::vector<std::string> missing;
    for (const auto& k : r->keys) {
      if (!model.count(k)) missing.push_back(k);
    }
    RG_FUZZ_CHECK(state.missing(r->keys) == missing, "missing keys");
    const wire::StoreState::Outcome out = state.apply(*r);
    switch (r->cmd) {
      case wire::kSet:
        model[r->keys[0]] = r->value;
        RG_FUZZ_CHECK(!out.waits && out.reply == u8_reply(0) && out.changed, "SET");
        break;
      case wire::kGet:
      case wire::kWait:
        RG_FUZZ_CHECK(out.waits == !missing.empty(), "a request waits exactly when a key is missing");
        if (out.waits) {
          const auto now = std::chrono::steady_clock::now();
          RG_FUZZ_CHECK(wire::wait_deadline(now, r->number) >= now, "deadline before now");
          wire::Writer w;
          w.u8(1);
          if (r->cmd == wire::kWait) {
            w.u32(static_cast<uint32_t>(missing.size()));
            for (const auto& k : missing) w.str(k);
          }
          RG_FUZZ_CHECK(state.waited_reply(r->cmd == wire::kGet, r->keys, true) == w.b, "timed-out reply");
        } else {
          wire::Writer w;
          w.u8(0);
          if (r->cmd == wire::kGet) w.bytes(model[r->keys[0]]);
          RG_FUZZ_CHECK(out.reply == w.b, "GET/WAIT reply");
        }
        break;
      case wire::kAdd: {
        RG_FUZZ_CHECK(out.reply.size() == 8 && out.changed, "ADD reply");
        int64_t v;
        std::memcpy(&v, out.reply.data(), 8);
        // A key that is absent or holds a decimal integer (as ADD writes it) becomes old + delta.
        int64_t old = 0;
        bool known = true;
        if (auto it = model.find(r->keys[0]); it != model.end()) {
          const std::string text(it->second.begin(), it->second.end());
          const auto res = std::from_chars(text.data(), text.data() + text.size(), old);
          known = res.ec == std::errc() && res.ptr == text.data() + text.size() && std::to_string(old) == text;
        }
        if (known) {
          const auto want = static_cast<int64_t>(static_cast<uint64_t>(old) + static_cast<uint64_t>(r->number));
          RG_FUZZ_CHECK(v == want, "ADD ", r->number, " to ", old, " gave ", v);
        }
        const std::string s = std::to_string(v);
        model[r->keys[0]] = Bytes(s.begin(), s.end());
        // The new value is what GET now reads.
        const auto got = state.apply({wire::kGet, {r->keys[0]}, {}, 0});
        RG_FUZZ_CHECK(!got.waits && got.reply.size() == 5 + s.size() && std::memcmp(got.reply.data() + 5, s.data(), s.size()) == 0,
                      "ADD's value reads back");
        break;
      }
      case wire::kCheck: RG_FUZZ_CHECK(out.reply == u8_reply(missing.empty() ? 1 : 0), "CHECK"); break;
      case wire::kDelete:
        RG_FUZZ_CHECK(out.reply == u8_reply(model.erase(r->keys[0]) ? 1 : 0), "DELETE");
        break;
    }
    RG_FUZZ_CHECK(state.size() == model.size(), "the store holds ", state.size(), " keys, the model ", model.size());
  }
  return 0;
}
