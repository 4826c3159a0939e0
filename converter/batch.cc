// Batch: many conversions, `jobs` at a time, each through the one
// ConvertFunction (safemodel/batch.h), and the results line of each.
#include "safemodel/batch.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "proto/digest.h"
#include "proto/json_util.h"
#include "safemodel/sharded_convert.h"

namespace safemodel {

const char* BatchStatusName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "converted";
    case StatusCode::kRefused:
      return "refused";
    case StatusCode::kMalformed:
      return "malformed";
    case StatusCode::kUnsupported:
      return "unsupported";
    case StatusCode::kLimitExceeded:
    case StatusCode::kTimeout:
      return "limit";
    case StatusCode::kSandboxViolation:
    case StatusCode::kWorkerCrashed:
    case StatusCode::kSandboxSetupFailed:
    case StatusCode::kInternal:
      return "sandbox";
    case StatusCode::kIoError:
      return "io_error";
    case StatusCode::kInvalidArgument:
      return "invalid";
  }
  return "sandbox";
}

unsigned DefaultBatchJobs() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

std::vector<std::string> BatchOptionsFingerprint(const ConvertOptions& o) {
  std::vector<std::string> f = {
      std::string("digest=") + DigestAlgorithmName(o.digest),
      "keep_optimizer=" + std::string(o.keep_optimizer ? "1" : "0"),
      "weights_only=" + std::string(o.weights_only ? "1" : "0"),
      "timeout_ms=" + std::to_string(o.timeout_ms),
      "memory_limit=" + std::to_string(o.memory_limit_bytes),
      "cpu_limit_s=" + std::to_string(o.cpu_limit_seconds),
      "max_input=" + std::to_string(o.max_input_bytes),
      "max_output=" + std::to_string(o.max_output_bytes),
  };
  std::vector<std::string> layers = o.required_isolation;
  std::sort(layers.begin(), layers.end());
  std::string joined;
  for (const std::string& l : layers) joined += (joined.empty() ? "" : ",") + l;
  f.push_back("require_isolation=" + joined);
  std::sort(f.begin(), f.end());
  return f;
}

Result<std::string> Sha256OfFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Status::IoError("cannot open '" + path + "': " + std::strerror(errno));
  constexpr size_t kBuf = 1 << 20;  // one reused buffer: memory stays flat
  std::unique_ptr<uint8_t[]> buf(new uint8_t[kBuf]);
  auto hasher = MakeHasher(DigestAlgorithm::kSha256);
  for (;;) {
    const ssize_t n = read(fd, buf.get(), kBuf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = std::strerror(errno);
      close(fd);
      return Status::IoError("cannot read '" + path + "': " + why);
    }
    if (n == 0) break;
    hasher->Update(ByteView(buf.get(), static_cast<size_t>(n)));
  }
  close(fd);
  return ToHex(hasher->Finish());
}

Batch::Batch(BatchOptions options) : options_(std::move(options)) {
  options_.convert.progress = nullptr;
  if (!options_.convert_function) options_.convert_function = ConvertFile;
  // The output's SHA-256 is computed as it is written (ConvertReport::
  // output_sha256), not by reading it back.
  options_.convert.hash_output = options_.hash_outputs;
  if (options_.jobs == 0) options_.jobs = DefaultBatchJobs();
}

// The single call site of every conversion of a batch.
BatchResult Batch::ConvertOne(size_t index, const BatchItem& item) const {
  BatchResult r;
  r.index = index;
  r.item = item;
  // A sharded checkpoint's index is a unit: each of its shards goes
  // through the same function.
  r.report = IsShardedCheckpointIndex(item.input_path)
                 ? ConvertShardedCheckpoint(item.input_path, item.output_path, options_.convert,
                                            options_.convert_function, options_.read_checkpoint_index)
                 : options_.convert_function(item.input_path, item.output_path, options_.convert);
  r.output_sha256 = r.report.output_sha256;
  // A host's own ConvertFunction may not fill it: the output is read back.
  if (r.report.status.ok() && options_.hash_outputs && r.output_sha256.empty() &&
      options_.convert.output_fd < 0) {
    Result<std::string> sha = Sha256OfFile(item.output_path);
    // The output was committed a moment ago; failing to read it back is an
    // I/O error of this item (a retry redoes it).
    if (sha.ok()) {
      r.output_sha256 = *sha;
    } else {
      r.report.status = sha.status();
    }
  }
  return r;
}

BatchSummary Batch::Run(const std::vector<BatchItem>& items,
                        const std::function<void(const BatchResult&)>& on_result) {
  std::atomic<size_t> next{0};
  std::mutex deliver;
  BatchSummary summary;
  auto loop = [&] {
    for (;;) {
      if (cancelled_) return;
      const size_t i = next.fetch_add(1);
      if (i >= items.size()) return;
      BatchResult r = ConvertOne(i, items[i]);
      std::lock_guard<std::mutex> lock(deliver);
      ++summary.finished;
      if (on_result) on_result(r);
    }
  };
  const size_t threads = std::min<size_t>(options_.jobs, items.size());
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (size_t t = 0; t < threads; ++t) pool.emplace_back(loop);
  for (std::thread& t : pool) t.join();
  summary.not_started = items.size() - summary.finished;
  return summary;
}

namespace {

nlohmann::ordered_json Header(const BatchItem& item) {
  nlohmann::ordered_json j;
  j["schema_version"] = kBatchResultsSchemaVersion;
  j["id"] = item.id;
  return j;
}

std::string Dump(nlohmann::ordered_json& j, const std::vector<std::string>& fingerprint) {
  j["converter"] = ConverterVersion();
  j["options"] = fingerprint;
  // One line; invalid UTF-8 (from a path) replaced rather than fail.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace

std::string BatchResultJson(const BatchResult& result, const std::vector<std::string>& fingerprint) {
  const ConvertReport& r = result.report;
  nlohmann::ordered_json j = Header(result.item);
  j["status"] = BatchStatusName(r.status.code());
  j["exit_code"] = ExitCodeFor(r.status.code());
  j["message"] = r.status.message();
  j["input"] = {{"path", result.item.input_path},
                {"bytes", r.input_bytes},
                {"sha256", r.input_sha256},
                {"format", r.source_format}};
  const bool ok = r.status.ok();
  j["output"] = {{"path", ok ? result.item.output_path : ""},
                 {"bytes", ok ? r.output_bytes : 0},
                 {"sha256", ok ? result.output_sha256 : ""},
                 {"tensors", ok ? r.tensor_count : 0}};
  j["findings"] = FindingsToJson(r.findings);
  j["wall_seconds"] = r.wall_seconds;
  j["cpu_seconds"] = r.worker.cpu_seconds;
  j["peak_memory_bytes"] = r.worker.max_rss_bytes;
  j["peak_memory_source"] = r.worker.max_rss_source;
  j["worker"] = WorkerOutcomeName(r.worker.kind);
  return Dump(j, fingerprint);
}

std::string BatchSkipJson(const BatchItem& item, const std::string& status, int exit_code,
                          const std::string& message, const std::vector<std::string>& fingerprint) {
  nlohmann::ordered_json j = Header(item);
  j["status"] = status;
  j["exit_code"] = exit_code;
  j["message"] = message;
  j["input"] = {{"path", item.input_path}, {"bytes", 0}, {"sha256", ""}, {"format", "unknown"}};
  j["output"] = {{"path", ""}, {"bytes", 0}, {"sha256", ""}, {"tensors", 0}};
  j["findings"] = nlohmann::ordered_json::array();
  j["wall_seconds"] = 0;
  j["cpu_seconds"] = 0;
  j["peak_memory_bytes"] = 0;
  j["peak_memory_source"] = "";
  j["worker"] = WorkerOutcomeName(WorkerOutcome::Kind::kNotStarted);
  return Dump(j, fingerprint);
}

}  // namespace safemodel
