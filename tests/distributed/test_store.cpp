// TCPStore and PrefixStore: every command, server-side blocking get/wait, concurrency, and the
// failure messages (dead port, port in use, wait timeout naming the keys, lost server).
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "dist_test_util.h"
#include "distributed/store.h"
#include "distributed/socket_util.h"
#include "distributed/store_protocol.h"

using namespace rg;
using namespace rg::dist;
using namespace rg::test;
using namespace std::chrono_literals;

TEST_CASE("TCPStore: set, get, add, check, delete") {
  TCPStore server("127.0.0.1", 0, true, 5000ms);
  CHECK(server.port() > 0);
  TCPStore client("127.0.0.1", server.port(), false, 5000ms);
  client.set("a", "hello");
  CHECK(server.get_string("a") == "hello");
  const Bytes bin = {0, 1, 2, 0, 255};
  server.set("bin", bin);
  CHECK(client.get("bin") == bin);
  Bytes big(3 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  client.set("big", big);
  CHECK(server.get("big") == big);
  CHECK(client.add("n", 5) == 5);
  CHECK(server.add("n", -2) == 3);
  CHECK(client.get_string("n") == "3");
  CHECK(client.check({"a", "n"}));
  CHECK_FALSE(client.check({"a", "missing"}));
  CHECK(client.delete_key("a"));
  CHECK_FALSE(client.delete_key("a"));
  CHECK_FALSE(server.check({"a"}));
  client.set("a", "again");  // overwrite after delete
  client.set("a", "twice");
  CHECK(server.get_string("a") == "twice");
}

TEST_CASE("TCPStore: get and wait block on the server until another client sets the key") {
  TCPStore server("127.0.0.1", 0, true, 5000ms);
  TCPStore client("127.0.0.1", server.port(), false, 5000ms);
  const auto t0 = std::chrono::steady_clock::now();
  std::thread setter([&] {
    std::this_thread::sleep_for(150ms);
    server.set("late", "value");
    std::this_thread::sleep_for(100ms);
    server.add("later", 1);
  });
  CHECK(client.get_string("late") == "value");
  client.wait({"late", "later"});
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ms >= 240);
  setter.join();
}

TEST_CASE("TCPStore: concurrent adds from many threads and clients are atomic") {
  TCPStore server("127.0.0.1", 0, true, 5000ms);
  std::vector<std::thread> ts;
  for (int k = 0; k < 4; ++k) {
    ts.emplace_back([&] {
      TCPStore c("127.0.0.1", server.port(), false, 5000ms);
      for (int i = 0; i < 100; ++i) {
        c.add("count", 1);
        server.add("count", 1);  // the server's own client, shared by the threads
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(server.add("count", 0) == 800);
}

TEST_CASE("TCPStore: wait and get time out naming the missing keys") {
  TCPStore server("127.0.0.1", 0, true, 300ms);
  server.set("rank/0", "x");
  const auto t0 = std::chrono::steady_clock::now();
  const std::string e = message_of([&] { server.wait({"rank/0", "rank/3"}, 300ms); });
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK_MESSAGE(e.find("wait timed out after 300 ms for keys: rank/3") != std::string::npos, e);
  CHECK(e.find("rank/0") == std::string::npos);
  CHECK(ms >= 290);
  CHECK(ms < 3000);
  const std::string g = message_of([&] { server.get("nope"); });
  CHECK_MESSAGE(g.find("get timed out after 300 ms for key: nope") != std::string::npos, g);
}

TEST_CASE("store protocol: a request's timeout saturates at the clock's end instead of overflowing") {
  // fuzz_store found a WAIT whose i64 timeout (360287970223521792 ms) overflowed the deadline into
  // the past: the server answered "timed out" at once (and UBSan aborts there).
  const auto now = std::chrono::steady_clock::now();
  const auto year = std::chrono::hours(24 * 365);
  CHECK(wire::wait_deadline(now, 360287970223521792) > now + year);
  CHECK(wire::wait_deadline(now, INT64_MAX) == std::chrono::steady_clock::time_point::max() -
                                                   (std::chrono::steady_clock::time_point::max() - now) % 1ms);
  CHECK(wire::wait_deadline(now, 1500) == now + 1500ms);
  CHECK(wire::wait_deadline(now, -7) == now);
  CHECK(wire::wait_deadline(now, INT64_MIN) == now);
  // and through a real server: a GET with that timeout waits until another client sets the key
  TCPStore server("127.0.0.1", 0, true, 5s);
  std::string err;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  net::Fd fd = net::connect_tcp("127.0.0.1", server.port(), deadline, &err);
  REQUIRE_MESSAGE(fd.valid(), err);
  const Bytes frame = wire::encode_request({wire::kGet, {"late"}, {}, 360287970223521792}).frame();
  int e = 0;
  REQUIRE(net::send_all(fd.get(), frame.data(), frame.size(), deadline, &e) == net::IoStatus::Ok);
  std::this_thread::sleep_for(200ms);
  TCPStore("127.0.0.1", server.port(), false, 5s).set("late", "v");
  uint8_t reply[4 + 1 + 4 + 1];
  REQUIRE(net::recv_all(fd.get(), reply, sizeof reply, deadline, &e) == net::IoStatus::Ok);
  CHECK(reply[4] == 0);  // found, not timed out
  CHECK(reply[9] == 'v');
}

TEST_CASE("store protocol: ADD wraps around at the ends of int64 instead of overflowing") {
  // fuzz_store found ADD overflowing a signed add (UB; UBSan aborts there): it wraps, as int64 does on
  // every host we run on.
  wire::StoreState st;
  const std::string max = "9223372036854775807";
  st.apply({wire::kSet, {"n"}, Bytes(max.begin(), max.end()), 0});
  const auto out = st.apply({wire::kAdd, {"n"}, {}, 1});
  int64_t v = 0;
  REQUIRE(out.reply.size() == 8);
  std::memcpy(&v, out.reply.data(), 8);
  CHECK(v == INT64_MIN);
  const auto got = st.apply({wire::kGet, {"n"}, {}, 0});
  CHECK(std::string(got.reply.begin() + 5, got.reply.end()) == "-9223372036854775808");
}

TEST_CASE("TCPStore: connecting to a port nobody serves fails naming the address and the time") {
  const int port = pick_free_port();
  const auto t0 = std::chrono::steady_clock::now();
  const std::string e = message_of([&] { TCPStore c("127.0.0.1", port, false, 1000ms); });
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK_MESSAGE(e.find("TCPStore: could not connect to 127.0.0.1:" + std::to_string(port) + " within 1s") !=
                    std::string::npos,
                e);
  CHECK_MESSAGE(e.find("Connection refused") != std::string::npos, e);
  CHECK(ms >= 900);  // it retried until the deadline
}

TEST_CASE("TCPStore: a port already in use is named") {
  TCPStore first("127.0.0.1", 0, true, 2000ms);
  const std::string e = message_of([&] { TCPStore second("127.0.0.1", first.port(), true, 2000ms); });
  CHECK_MESSAGE(e.find("TCPStore: port " + std::to_string(first.port()) +
                       " is already in use (bind: Address already in use)") != std::string::npos,
                e);
}

TEST_CASE("TCPStore: a client whose server went away gets a clear error") {
  auto server = std::make_unique<TCPStore>("127.0.0.1", 0, true, 1000ms);
  TCPStore client("127.0.0.1", server->port(), false, 1000ms);
  client.set("k", "v");
  server.reset();
  const std::string e = message_of([&] { client.set("k2", "v"); });
  CHECK_MESSAGE(e.find("TCPStore:") != std::string::npos, e);
  CHECK_MESSAGE((e.find("lost the connection") != std::string::npos || e.find("could not connect") != std::string::npos), e);
}

TEST_CASE("PrefixStore: keys live in their own namespace") {
  auto base = std::make_shared<TCPStore>("127.0.0.1", 0, true, 2000ms);
  PrefixStore a("a/", base), b("b/", base);
  a.set("k", "1");
  b.set("k", "2");
  CHECK(a.get_string("k") == "1");
  CHECK(b.get_string("k") == "2");
  CHECK(base->get_string("a/k") == "1");
  CHECK(a.add("n", 3) == 3);
  CHECK_FALSE(b.check({"n"}));
  CHECK(a.check({"k", "n"}));
  CHECK(a.delete_key("k"));
  CHECK_FALSE(base->check({"a/k"}));
  CHECK(base->check({"b/k"}));
  a.set_timeout(200ms);
  const std::string e = message_of([&] { a.wait({"x"}); });
  CHECK_MESSAGE(e.find("a/x") != std::string::npos, e);
  const std::string g = message_of([&] { a.get("x"); });
  CHECK_MESSAGE(g.find("timed out after 200 ms") != std::string::npos, g);
  CHECK(a.local_address() == "127.0.0.1");
}
