// The ring's collectives in real processes started by the launcher: every collective, dtype and
// reduce op on 1, 2, 3 and 4 ranks over tcp and shm, checked against values computed from a
// formula (tests/distributed/worker/dist_worker.cpp) and bitwise across ranks; 64 MiB tensors;
// f32 accumulation of f16/bf16; asynchronous queues; timeouts, dead peers and debug mode.
#include <doctest/doctest.h>

#include "dist_test_util.h"

using namespace rg;
using namespace rg::test;

#define CHECK_JOB_OK(job)                                                       \
  do {                                                                          \
    CHECK_MESSAGE((job).result.exit_code == 0, (job).result.message, "\n", (job).all_logs()); \
  } while (0)

TEST_CASE("ring collectives: every op, dtype and size, world sizes 1-4, tcp and shm") {
  // Sizes: 1 element, primes, and 300007 (several 256 KiB sub-chunks per rank's chunk).
  for (int world : {1, 2, 3, 4}) {
    for (const char* transport : {"tcp", "shm"}) {
      if (world == 1 && std::string(transport) == "shm") continue;  // no links at world size 1
      CAPTURE(world);
      CAPTURE(transport);
      const std::string expect = world == 1 ? "none" : transport;
      Job j = run_workers(world, {"collectives", "--sizes", "1,7,1031,300007", "--expect-transport", expect},
                          {{"RINGGRAD_RING_TRANSPORT", transport}});
      CHECK_JOB_OK(j);
      CHECK(j.count("OK collectives") == world);
    }
  }
}

TEST_CASE("ring collectives: 64 MiB tensors") {
  for (int world : {2, 4}) {
    for (const char* transport : {"tcp", "shm"}) {
      if (world == 4 && std::string(transport) == "tcp") continue;  // keep the suite short on 2 cores
      CAPTURE(world);
      CAPTURE(transport);
      Job j = run_workers(world, {"big"}, {{"RINGGRAD_RING_TRANSPORT", transport}});
      CHECK_JOB_OK(j);
      CHECK(j.count("OK big") == world);
    }
  }
}

TEST_CASE("ring: f16/bf16 sums accumulate in f32 and round once") {
  for (int world : {3, 4}) {
    CAPTURE(world);
    Job j = run_workers(world, {"halfacc"});
    CHECK_JOB_OK(j);
  }
}

TEST_CASE("ring: queued collectives complete in call order, waited in any order") {
  Job j = run_workers(3, {"async"});
  CHECK_JOB_OK(j);
}

TEST_CASE("ring: a rank that never arrives makes the others time out, naming it (watchdog off)") {
  // With the hang watchdog on (the default) a timeout ends the process with a report instead:
  // tests/distributed/test_faults.cpp. Off, it is the error below.
  for (const char* transport : {"tcp", "shm"}) {
    CAPTURE(transport);
    Job j = run_workers(3, {"timeout", "--sleeper", "2", "--timeout-ms", "1500"},
                        {{"RINGGRAD_RING_TRANSPORT", transport}, {"RINGGRAD_WATCHDOG", "0"}});
    CHECK(j.result.exit_code == 3);
    CHECK((j.result.failed_rank == 0 || j.result.failed_rank == 1));
    const std::string& log = j.logs[j.result.failed_rank];
    const std::string me = "rank " + std::to_string(j.result.failed_rank) + ": allreduce #2 float32[7] cpu";
    CHECK_MESSAGE(log.find(me + " timed out after 1500 ms") != std::string::npos, log);
    CHECK_MESSAGE(log.find("ranks that never reached it: 2") != std::string::npos, log);
    // The group is broken afterwards and says why.
    CHECK_MESSAGE(log.find("unusable after an earlier failure") != std::string::npos, log);
  }
}

TEST_CASE("ring: a peer that exits makes the others fail naming it, not hang") {
  for (const char* transport : {"tcp", "shm"}) {
    CAPTURE(transport);
    Job j = run_workers(2, {"dead-peer", "--quitter", "1"}, {{"RINGGRAD_RING_TRANSPORT", transport}});
    CHECK(j.result.exit_code == 4);
    CHECK(j.result.failed_rank == 0);
    const std::string& log = j.logs[0];
    CHECK_MESSAGE(log.find("rank 0: allreduce #1 float32[1048576] cpu failed: rank 1") != std::string::npos, log);
    CHECK_MESSAGE((log.find("closed its connection") != std::string::npos || log.find("died") != std::string::npos),
                  log);
  }
}

TEST_CASE("RINGGRAD_DIST_DEBUG=1: ranks calling different collectives are named") {
  Job j = run_workers(2, {"debug-mismatch"}, {{"RINGGRAD_DIST_DEBUG", "1"}});
  CHECK(j.result.exit_code == 5);
  const std::string& log = j.logs[0];
  CHECK_MESSAGE(log.find("collective #1 differs across ranks: rank 1 called allreduce(sum) float32[9] cpu, rank 0 "
                         "called allreduce(sum) float32[8] cpu") != std::string::npos,
                log);
}

TEST_CASE("env:// rendezvous from Slurm and Open MPI variables, several processes") {
  for (const char* as : {"slurm", "ompi"}) {
    CAPTURE(as);
    Job j = run_workers(3, {"rendezvous", "--as", as});
    CHECK_JOB_OK(j);
    CHECK(j.count("OK rendezvous") == 3);
  }
}
