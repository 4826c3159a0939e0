// Fuzz target: the parent's reading of a (hostile) worker's frame stream.
// Whatever the frames say, the parent must end in a status, write at most
// what a validated header allows, and never crash.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "converter/worker_stream.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int in = memfd_create("frames", MFD_CLOEXEC);
  int out = memfd_create("output", MFD_CLOEXEC);
  if (in < 0 || out < 0) return 0;
  if (write(in, data, size) == static_cast<ssize_t>(size) && lseek(in, 0, SEEK_SET) == 0) {
    safemodel::sandbox::FrameReader reader(
        in, std::chrono::steady_clock::now() + std::chrono::seconds(10));
    safemodel::ConvertReport report;
    safemodel::StreamOutcome stream;
    // The LOCKED frame is accepted as is: the /proc check needs a process.
    // A hand-off is allowed (the lean worker's stream), so that its checks
    // are reached too.
    // The input is the fuzz data itself, so that TENSOR_REF ranges are read.
    safemodel::ReadWorkerStream(reader, out, size, in, {}, safemodel::DigestAlgorithm::kXxh3_128,
                                1ull << 30, nullptr, &report, &stream, /*hand_off_allowed=*/true);
    if (stream.report == safemodel::StreamOutcome::Report::kDone && stream.writer &&
        stream.writer->complete()) {
      (void)stream.writer->Finish(std::string(32, '\0'));
    }
  }
  close(in);
  close(out);
  return 0;
}
