// NodeAgent (launcher_internal.h): the nodes' launchers meet in the job's store, served by node 0's
// launcher: shape check, round barriers, heartbeats, failures, stops and exits (Note [Elastic rounds]).
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "core/error.h"
#include "distributed/launcher_internal.h"
#include "distributed/store.h"

namespace rg::dist::detail {

namespace {

constexpr Millis kPoll{50};

std::string host_name() {
  char h[256] = {0};
  ::gethostname(h, sizeof h - 1);
  return h;
}

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s;
}

// "F|node|rank|pid|code|killed|what" or "S|node|signal".
std::string encode_failure(const RankFailure& f) {
  return "F|" + std::to_string(f.node) + "|" + std::to_string(f.rank) + "|" + std::to_string(f.pid) + "|" +
         std::to_string(f.exit_code) + "|" + (f.killed ? "1" : "0") + "|" + f.what;
}

std::vector<std::string> split(const std::string& s, char c, size_t max_parts) {
  std::vector<std::string> out;
  size_t p = 0;
  while (out.size() + 1 < max_parts) {
    const size_t q = s.find(c, p);
    if (q == std::string::npos) break;
    out.push_back(s.substr(p, q - p));
    p = q + 1;
  }
  out.push_back(s.substr(p));
  return out;
}

}  // namespace

NodeAgent::NodeAgent(const LaunchOptions& o) : o_(o) {
  const std::string where = o.master_addr + ":" + std::to_string(o.master_port);
  try {
    store_ = std::make_shared<TCPStore>(o.master_addr, o.master_port, o.node_rank == 0, o.rdzv_timeout);
  } catch (const std::exception& e) {
    if (o.node_rank == 0) {
      RG_THROW("ringgrad launch: node 0 cannot serve the job's store on port ", o.master_port, ": ", e.what());
    }
    RG_THROW("ringgrad launch: node ", o.node_rank, " could not reach the job's store at ", where, " within ",
             net::format_duration(o.rdzv_timeout), " (--rdzv-timeout): is node 0's `ringgrad launch` running, ",
             "with this --master-addr and --master-port? (", e.what(), ")");
  }
  port_ = store_->port();
}

NodeAgent::~NodeAgent() = default;

void NodeAgent::check_shape() {
  const std::string mine = "--nnodes " + std::to_string(o_.nnodes) + " --nproc-per-node " +
                           std::to_string(o_.nproc_per_node) + " --max-restarts " + std::to_string(o_.max_restarts);
  if (o_.node_rank == 0) store_->set(key("shape"), mine);
  store_->wait({key("shape")}, o_.rdzv_timeout);
  const std::string theirs = store_->get_string(key("shape"));
  RG_CHECK(theirs == mine, "ringgrad launch: node ", o_.node_rank, " was started with ", mine, ", node 0 with ",
           theirs, ": every node must give the same values");
  const int64_t claims = store_->add(key("claim/" + std::to_string(o_.node_rank)), 1);
  RG_CHECK(claims == 1, "ringgrad launch: another launcher already joined this job as --node-rank ", o_.node_rank,
           " (each node needs its own --node-rank, 0 to ", o_.nnodes - 1, ")");
}

void NodeAgent::beat() {
  const auto now = LaunchClock::now();
  if (now - last_beat_ < Millis(1000)) return;
  last_beat_ = now;
  store_->add(key("beat/" + std::to_string(o_.node_rank)), 1);
}

bool NodeAgent::join(int round, const std::function<bool()>& interrupted) {
  const std::string prefix = "round/" + std::to_string(round) + "/join/";
  store_->set(key(prefix + std::to_string(o_.node_rank)), host_name());
  const auto until = LaunchClock::now() + o_.rdzv_timeout;
  for (;;) {
    beat();
    std::vector<int> missing;
    for (int q = 0; q < o_.nnodes; ++q) {
      if (!store_->check({key(prefix + std::to_string(q))})) missing.push_back(q);
    }
    if (missing.empty()) return true;
    if (interrupted()) return false;
    if (LaunchClock::now() >= until) {
      RG_THROW("ringgrad launch: node", missing.size() == 1 ? " " : "s ", join_ints(missing), " never joined ",
               round == 0 ? std::string("the job") : "restart round " + std::to_string(round),
               " within ", net::format_duration(o_.rdzv_timeout), " (--rdzv-timeout); every node runs `ringgrad launch --nnodes ",
               o_.nnodes, " --node-rank R --master-addr ", o_.master_addr, " --master-port ", port_, " ...`");
    }
    std::this_thread::sleep_for(kPoll);
  }
}

void NodeAgent::publish_failure(int round, const RankFailure& f) {
  const std::string r = "round/" + std::to_string(round) + "/";
  const int64_t k = store_->add(key(r + "events"), 1);
  store_->set(key(r + "event/" + std::to_string(k)), encode_failure(f));
}

void NodeAgent::publish_stop(int round, int sig) {
  const std::string r = "round/" + std::to_string(round) + "/";
  const int64_t k = store_->add(key(r + "events"), 1);
  store_->set(key(r + "event/" + std::to_string(k)), "S|" + std::to_string(o_.node_rank) + "|" + std::to_string(sig));
}

int64_t NodeAgent::events(int round) { return store_->add(key("round/" + std::to_string(round) + "/events"), 0); }

NodeAgent::News NodeAgent::news(int round) {
  const std::string r = "round/" + std::to_string(round) + "/";
  News n;
  const int64_t count = events(round);
  for (int64_t k = 1; k <= count; ++k) {
    const std::string ek = key(r + "event/" + std::to_string(k));
    if (!store_->check({ek})) continue;  // counted, not written yet: the next poll reads it
    const std::string v = store_->get_string(ek);
    if (v.rfind("S|", 0) == 0) {
      const auto p = split(v, '|', 3);
      if (n.stop_signal == 0 && p.size() == 3) {
        n.stop_node = std::atoi(p[1].c_str());
        n.stop_signal = std::atoi(p[2].c_str());
      }
    } else if (v.rfind("F|", 0) == 0) {
      const auto p = split(v, '|', 7);
      if (p.size() < 7) continue;
      RankFailure f;
      f.round = round;
      f.node = std::atoi(p[1].c_str());
      f.rank = std::atoi(p[2].c_str());
      f.pid = std::atoi(p[3].c_str());
      f.exit_code = std::atoi(p[4].c_str());
      f.killed = p[5] == "1";
      f.what = p[6];
      n.failures.push_back(std::move(f));
    }
  }
  return n;
}

void NodeAgent::publish_exit(int round, int code) {
  store_->set(key("round/" + std::to_string(round) + "/exit/" + std::to_string(o_.node_rank)), std::to_string(code));
}

std::map<int, int> NodeAgent::wait_exits(int round) {
  const std::string prefix = "round/" + std::to_string(round) + "/exit/";
  std::map<int, int> codes;
  for (;;) {
    beat();
    const auto now = LaunchClock::now();
    bool waiting = false;
    for (int q = 0; q < o_.nnodes; ++q) {
      if (codes.count(q)) continue;
      const std::string k = key(prefix + std::to_string(q));
      if (store_->check({k})) {
        codes[q] = std::atoi(store_->get_string(k).c_str());
        continue;
      }
      // Still running, as long as its launcher's heartbeat moves.
      const int64_t b = store_->add(key("beat/" + std::to_string(q)), 0);
      auto it = seen_beats_.find(q);
      if (it == seen_beats_.end() || it->second.first != b) {
        seen_beats_[q] = {b, now};
      } else if (now - it->second.second > o_.node_timeout) {
        codes[q] = -1;  // lost
        continue;
      }
      waiting = true;
    }
    if (!waiting) return codes;
    std::this_thread::sleep_for(kPoll);
  }
}

void NodeAgent::finish() {
  try {
    store_->set(key("done/" + std::to_string(o_.node_rank)), "1");
    if (o_.node_rank != 0) return;
    const auto until = LaunchClock::now() + Millis(5000);
    for (int q = 1; q < o_.nnodes; ++q) {
      while (!store_->check({key("done/" + std::to_string(q))}) && LaunchClock::now() < until) {
        std::this_thread::sleep_for(kPoll);
      }
    }
  } catch (const std::exception&) {
    // the job is over; a node that cannot say goodbye changes nothing
  }
}

}  // namespace rg::dist::detail
