// Progress bar and duration formatting for the training engine (train/progress.h).
#include "train/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace rg::train {

bool stdout_is_tty() { return ::isatty(STDOUT_FILENO) == 1; }

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

ProgressBar::ProgressBar(std::string prefix, int64_t total_steps, bool tty, int64_t log_every, int64_t start_step)
    : prefix_(std::move(prefix)),
      total_(total_steps),
      tty_(tty),
      every_(log_every > 0 ? log_every : std::max<int64_t>(1, (total_steps + 4) / 5)),
      start_step_(start_step),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

double ProgressBar::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

bool ProgressBar::due(int64_t done) const {
  if (done >= total_) return !tty_;  // the final state is the epoch summary on a terminal
  if (!tty_) return done % every_ == 0;
  const auto now = std::chrono::steady_clock::now();
  return done == start_step_ + 1 || std::chrono::duration<double>(now - last_draw_).count() >= 0.25;
}

void ProgressBar::update(int64_t done, int64_t images_done, const std::string& stats) {
  last_draw_ = std::chrono::steady_clock::now();
  const double t = elapsed();
  const double ips = t > 0 ? static_cast<double>(images_done) / t : 0.0;
  const int64_t run = done - start_step_;
  const double eta = run > 0 ? t * static_cast<double>(total_ - done) / static_cast<double>(run) : 0.0;
  constexpr int kWidth = 24;
  const int fill = total_ > 0 ? static_cast<int>(kWidth * done / total_) : kWidth;
  std::string bar(static_cast<size_t>(kWidth), ' ');
  for (int i = 0; i < fill; ++i) bar[static_cast<size_t>(i)] = '=';
  if (fill < kWidth) bar[static_cast<size_t>(fill)] = '>';
  char line[512];
  std::snprintf(line, sizeof(line), "%s [%s] %lld/%lld  %s  %.0f img/s  ETA %s", prefix_.c_str(), bar.c_str(),
                static_cast<long long>(done), static_cast<long long>(total_), stats.c_str(), ips,
                format_duration(eta).c_str());
  if (tty_) {
    std::printf("\r%s\033[K", line);
  } else {
    std::printf("%s\n", line);
  }
  std::fflush(stdout);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (tty_ && drawn_) {
    std::printf("\r\033[K");
    std::fflush(stdout);
  }
}

}  // namespace rg::train
