// The exit codes a ringgrad rank and `ringgrad launch` agree on (Note [Exit codes]): what each
// means, which ones the launcher restarts, and their names for messages. Trainers include this.
#pragma once

#include <string>

namespace rg::dist {

// Note [Exit codes]
// A rank exits with one of these, and `ringgrad launch` returns the ranks' code:
//   0    the job finished.
//   1    an error (an exception: bad input, a failed check, a broken peer); 2 is a usage error.
//   75   kExitPreempted: a preemption signal (SIGTERM, SIGUSR1 from Slurm's --signal, SIGINT)
//        arrived, the ranks agreed on a step, the checkpoint was saved, every rank stopped.
//        Run the same command again to resume (EX_TEMPFAIL of <sysexits.h>: "try again later").
//        The launcher never restarts it: the machine is being taken away.
//   86   kExitCollectiveHang: the watchdog saw a collective make no progress for the collective
//        timeout, printed its hang report and ended the process instead of hanging forever.
//   87   kExitNanStop: the NaN/Inf guard stopped training (too many non-finite steps in a row).
//        Not restarted: it would happen again from the same checkpoint.
//   124  the launcher's job timeout; 125-127 the rank could not be started (127: no such program).
//   128+N  a rank was killed by signal N (137 = SIGKILL, 143 = SIGTERM), or the launcher itself
//        got signal N and the ranks did not all stop with kExitPreempted.
// 75, 86 and 87 sit outside 1-2, 64-74 and 76-78 (<sysexits.h>; 77 is also ctest's "skipped"),
// 124-127 (timeout(1), exec failures) and 128+ (signals), so no other tool means them.
inline constexpr int kExitPreempted = 75;
inline constexpr int kExitCollectiveHang = 86;
inline constexpr int kExitNanStop = 87;

// "preempted, checkpoint saved", "collective hang seen by the watchdog", "killed by signal 9
// (SIGKILL)", "exit code 3": for messages.
std::string exit_code_meaning(int code);

// Whether `ringgrad launch --max-restarts` starts the group again after a rank exits this way.
inline bool is_restartable_exit(int code) {
  return code != 0 && code != kExitPreempted && code != kExitNanStop;
}

}  // namespace rg::dist
