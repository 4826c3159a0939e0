// What `safe-convert batch` shows and writes besides the results file: the
// live line on a terminal, the summary table, and the SARIF 2.1.0 log.
#ifndef SAFEMODEL_CONVERTER_CLI_BATCH_REPORT_H_
#define SAFEMODEL_CONVERTER_CLI_BATCH_REPORT_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace safemodel::cli {

// The statuses of a results line, in the order the summary lists them.
const std::vector<std::string>& BatchStatuses();

// Counts of a batch as it runs, and the lines drawn from them.
class BatchTally {
 public:
  BatchTally(size_t total, uint64_t total_bytes) : total_(total), total_bytes_(total_bytes) {}
  // One finished input (from a results line); `skipped`: done by an
  // earlier run.
  void Add(const std::string& status, uint64_t bytes, bool skipped);
  // "safe-convert batch: 12/300 files, 1.2 MiB of 40 MiB, 30.1 files/s,
  // 2.0 MiB/s, 9 s left; converted 10, refused 2"
  std::string LiveLine() const;
  // The table printed at the end: a row per status seen, the totals, the
  // rate of this run.
  std::string Summary() const;
  size_t Count(const std::string& status) const;
  size_t done() const { return done_; }

 private:
  using Clock = std::chrono::steady_clock;
  size_t total_;
  uint64_t total_bytes_;
  size_t done_ = 0;
  size_t skipped_ = 0;
  uint64_t bytes_ = 0;
  uint64_t converted_bytes_now_ = 0;  // by this run (the rate)
  size_t converted_now_ = 0;
  std::map<std::string, std::pair<size_t, uint64_t>> per_status_;
  Clock::time_point start_ = Clock::now();
};

// The SARIF 2.1.0 log of results lines: one run, tool.driver "safe-convert"
// with a rule per finding rule seen; a result per finding of an input that
// was not converted (its severity as the level: refused "error", dropped
// "warning", note "note"), or, for one without findings, a result whose
// ruleId is "status.<status>"; each located at the input's path (a relative
// URI for a relative path). Converted inputs' notes are "note" results.
std::string SarifLog(const std::vector<nlohmann::json>& results, const std::string& version);

// RFC 3986 percent-encoding of a path for a SARIF artifactLocation.uri
// ("/" and unreserved characters kept).
std::string PathToUri(const std::string& path);

}  // namespace safemodel::cli

#endif  // SAFEMODEL_CONVERTER_CLI_BATCH_REPORT_H_
