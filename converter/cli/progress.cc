#include "converter/cli/progress.h"

#include <cstdio>
#include <iostream>

#include "converter/cli/messages.h"

namespace safemodel::cli {

namespace {

std::string TimeLeft(double s) {
  char buf[64];
  if (s < 100) {
    std::snprintf(buf, sizeof buf, "%.0f s left", s);
  } else if (s < 6000) {
    std::snprintf(buf, sizeof buf, "%.0f min left", s / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f h left", s / 3600);
  }
  return buf;
}

}  // namespace

std::string ProgressLine(const std::string& file, uint64_t done, uint64_t total, double seconds) {
  std::string line = "safe-convert: " + E(file) + ": " + HumanBytes(done) + " of " + HumanBytes(total);
  if (total > 0) line += " (" + std::to_string(done >= total ? 100 : done * 100 / total) + "%)";
  if (seconds > 0 && done > 0) {
    const double rate = static_cast<double>(done) / seconds;
    line += ", " + HumanBytes(static_cast<uint64_t>(rate)) + "/s";
    if (total > done) line += ", " + TimeLeft(static_cast<double>(total - done) / rate);
  }
  return line;
}

void ProgressDisplay::Update(const ConvertProgress& p) {
  if (!enabled_) return;
  const auto now = Clock::now();
  if (!started_) {
    started_ = true;
    start_ = now;
  } else if (now - last_draw_ < kRedrawInterval) {
    return;
  }
  last_draw_ = now;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  // \r and "erase to the end of the line": the line is redrawn in place.
  std::cerr << "\r" << ProgressLine(file_, p.bytes_written, p.bytes_total, seconds) << "\x1b[K" << std::flush;
  drawn_ = true;
}

void ProgressDisplay::Finish() {
  if (!drawn_) return;
  std::cerr << "\r\x1b[K" << std::flush;
  drawn_ = false;
}

}  // namespace safemodel::cli
