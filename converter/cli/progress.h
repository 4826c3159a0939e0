// Progress of a large conversion on a terminal: one line on stderr, redrawn
// in place, with the bytes written, the rate and the time left; nothing at
// all when stderr is not a terminal (a log, a pipe, a batch job).
#ifndef SAFEMODEL_CONVERTER_CLI_PROGRESS_H_
#define SAFEMODEL_CONVERTER_CLI_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "safemodel/convert.h"

namespace safemodel::cli {

// Smaller inputs convert in well under a second: no progress for them.
inline constexpr uint64_t kMinProgressInputBytes = 64ull << 20;

// "safe-convert: FILE: 1.2 GiB of 3.4 GiB (35%), 850.0 MiB/s, 3 s left"
// (FILE escaped); `seconds` since the output's size became known.
std::string ProgressLine(const std::string& file, uint64_t done, uint64_t total, double seconds);

class ProgressDisplay {
 public:
  // Draws only if `enabled` (the caller checks the terminal, the input's
  // size and --quiet).
  ProgressDisplay(std::string file, bool enabled) : file_(std::move(file)), enabled_(enabled) {}
  ~ProgressDisplay() { Finish(); }
  ProgressDisplay(const ProgressDisplay&) = delete;
  ProgressDisplay& operator=(const ProgressDisplay&) = delete;

  // ConvertOptions::progress; redraws at most every kRedrawInterval.
  void Update(const ConvertProgress& p);
  // Erases the line, so that what follows starts on a clean one.
  void Finish();

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kRedrawInterval{200};
  std::string file_;
  bool enabled_;
  bool drawn_ = false;
  bool started_ = false;
  Clock::time_point start_;
  Clock::time_point last_draw_;
};

}  // namespace safemodel::cli

#endif  // SAFEMODEL_CONVERTER_CLI_PROGRESS_H_
