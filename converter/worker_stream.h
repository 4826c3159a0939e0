// The parent's reading of the worker's frame stream (converter/pipeline.cc
// runs the process; this validates what it says).
//
// Trust: everything read here comes from a process that parsed attacker
// bytes. Every frame is capped before it is read, the proposed header is
// rebuilt field by field from validated values (unknown protobuf fields and
// all) and every tensor byte is counted by the writer.
#ifndef SAFEMODEL_CONVERTER_WORKER_STREAM_H_
#define SAFEMODEL_CONVERTER_WORKER_STREAM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "converter/writer.h"
#include "safemodel/convert.h"
#include "sandbox/frame_io.h"

namespace safemodel {

// A data frame carries at most this much; the worker sends 1 MiB frames.
inline constexpr uint64_t kMaxDataFrameBytes = 16ull << 20;
// Error frames carry a message and findings (each capped in format.h).
inline constexpr uint64_t kMaxErrorFrameBytes = 64ull << 20;
inline constexpr uint64_t kMaxDoneFrameBytes = 4096;
// The worker reports a handful of layer names ("seccomp", "userns", ...).
inline constexpr size_t kMaxIsolationLayers = 16;

// What the parent learned from the stream.
struct WorkerStream {
  std::unique_ptr<SafemodelWriter> writer;
  bool header_seen = false;
  bool done = false;
  bool error_frame = false;
  Status worker_error;
  bool violation = false;
  uint32_t violation_nr = 0;
  uint32_t violation_arch = 0;
  bool timed_out = false;
  Status protocol;  // set when the worker broke the protocol
  Status io;        // set when writing the output failed
  Status limit;     // set when the output would exceed a limit or the free space
  uint64_t data_bytes = 0;
};

// Reads frames until EOF, a protocol error, a timeout or an I/O error on the
// output (each recorded in *st), writing a valid result to `out_fd` through
// SafemodelWriter. Findings, source format and isolation layers go to *report.
// `max_output_bytes` (0: none) caps the output file; independently, the
// output's declared size is reserved on the file system `out_fd` is on
// (ReserveOutputSpace), so a worker that declares terabytes is stopped before
// it writes them.
void ReadWorkerStream(sandbox::FrameReader& reader, int out_fd, uint64_t input_size,
                      const std::vector<std::string>& options, DigestAlgorithm digest,
                      uint64_t max_output_bytes, ConvertReport* report, WorkerStream* st);

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_WORKER_STREAM_H_
