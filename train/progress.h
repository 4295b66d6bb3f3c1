// A per-epoch progress bar for the trainers: redrawn in place with \r on a terminal (at most a few
// times a second), one plain line every N steps otherwise (logs, CI). Callers read their device
// statistics (a host sync) only when due() says a line will be drawn.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace rg::train {

bool stdout_is_tty();
std::string format_duration(double seconds);  // "0:42", "12:03", "1:02:03"

class ProgressBar {
 public:
  // log_every: the step interval of plain lines (0: about five lines per epoch). start_step: the
  // steps already done when the bar starts (an epoch resumed in its middle); rates and the ETA
  // count from there.
  ProgressBar(std::string prefix, int64_t total_steps, bool tty, int64_t log_every, int64_t start_step = 0);
  // Whether update(done, ...) would draw now.
  bool due(int64_t done) const;
  // Draws "prefix [=====>    ] done/total  <stats>  N img/s  ETA m:ss"; images_done counts from the start.
  void update(int64_t done, int64_t images_done, const std::string& stats);
  // Clears the in-place bar on a terminal (the caller prints the epoch summary next).
  void finish();
  double elapsed() const;

 private:
  std::string prefix_;
  int64_t total_;
  bool tty_;
  int64_t every_;
  int64_t start_step_;
  std::chrono::steady_clock::time_point start_;
  mutable std::chrono::steady_clock::time_point last_draw_;
  bool drawn_ = false;
};

}  // namespace rg::train
