// The parent's cost per tensor of a worker's proposal (issue 15, a
// checkpoint of 100,000 small tensors): reading the HEADER frame, laying the
// tensors out, writing the header, the data and the trailer make a bounded
// number of heap allocations whatever the tensor count. Each entry is parsed
// into one reused message and kept in the writer's compact table
// (format::TensorTable); before, the parent held every entry as a
// TensorInfo message (with its name and shape on the heap) and finished a
// digest string per tensor: ~8 allocations per tensor.
//
// And the bytes the parent holds per tensor at its peak (the eleventh
// round, tests/bench/PROFILE.md): the frame is parsed as it is read, not
// held whole; the table keeps 16 bytes a tensor, what its name does not
// share with the one before, and its shape; the digests go to the output
// file as they are computed.
//
// This binary counts `operator new` and the bytes it holds. The counts are
// exact properties of the code, not timings.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/testing/allocation_counter.h"
#include "converter/protocol/worker.pb.h"
#include "converter/worker_stream.h"
#include "proto/wire/wire.h"
#include "sandbox/frame_io.h"

namespace safemodel {
namespace {

using sandbox::FrameType;

struct Cost {
  uint64_t allocations = 0;
  uint64_t peak_bytes = 0;  // the most held at once, above what was held before
};

// A worker's whole stream for `count` uint8[4] tensors (names longer than
// a short string's inline buffer), with source indices, written to a
// memory file; returns the allocations ReadWorkerStream and Finish made,
// and the most they held at once.
Cost CostFor(int count) {
  const int in = memfd_create("stream", MFD_CLOEXEC);
  const int out = open(::testing::TempDir().c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  EXPECT_GE(in, 0);
  EXPECT_GE(out, 0);
  auto frame = [&](FrameType type, const std::string& payload) {
    EXPECT_TRUE(sandbox::WriteFrame(in, type, payload.data(), payload.size()));
  };
  frame(FrameType::kLocked, sandbox::EncodeLockedClaim({"seccomp"}));
  {
    worker::WorkerHeader h;
    h.set_source_format("npz");
    for (int i = 0; i < count; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "layer.%06d.weight", i);
      v1::TensorInfo* t = h.add_tensors();
      t->set_name(name);
      t->set_dtype(v1::U8);
      t->add_shape(4);
      t->set_source_index(static_cast<uint64_t>(count - 1 - i));
    }
    frame(FrameType::kHeader, wire::SerializeDeterministic(h));
  }
  for (int i = 0; i < count; ++i) frame(FrameType::kTensorData, std::string(4, '\1'));
  worker::WorkerDone done;
  done.set_tensors_sent(static_cast<uint64_t>(count));
  done.set_bytes_sent(4 * static_cast<uint64_t>(count));
  frame(FrameType::kDone, wire::SerializeDeterministic(done));
  EXPECT_EQ(lseek(in, 0, SEEK_SET), 0);

  const uint64_t before = testing::AllocationCount();
  const uint64_t live_before = testing::LiveBytes();
  testing::ResetPeakLiveBytes();
  uint64_t after = before;
  {
    sandbox::FrameReader reader(in, std::chrono::steady_clock::now() + std::chrono::seconds(60));
    ConvertReport report;
    StreamOutcome st;
    ReadWorkerStream(reader, out, 1 << 30, -1, {}, DigestAlgorithm::kXxh3_128, 0, nullptr, &report,
                     &st);
    EXPECT_EQ(st.report, StreamOutcome::Report::kDone) << st.cause().ToString();
    if (st.writer) {
      EXPECT_TRUE(st.writer->Finish(std::string(32, '\0')).ok());
      EXPECT_EQ(st.writer->tensor_count(), static_cast<size_t>(count));
    }
    after = testing::AllocationCount();
  }
  close(in);
  close(out);
  return {after - before, testing::PeakLiveBytes() - live_before};
}

TEST(HeaderAllocations, BoundedWhateverTheTensorCount) {
  (void)CostFor(10);  // what is set up once per process (descriptors, tables)
  const uint64_t small = CostFor(100).allocations;
  const uint64_t large = CostFor(20'000).allocations;
  // The same handful of buffers and messages for both, give or take the
  // containers that grow by doubling: not one per tensor.
  EXPECT_LT(small, 200u);
  EXPECT_LT(large, small + 50) << small << " allocations for 100 tensors";
}

// What 30,000 more tensors add to the peak, per tensor: the table's record
// (16 bytes) and its text (of an 18-byte name the 8 or 9 bytes it does not
// share with the previous one, whole every 16th; a 1-byte shape), give or
// take the blocks they are kept in (64 KiB each). Fixed buffers (the
// parse's window, the output's, the trailer's) are in both and cancel out.
TEST(HeaderAllocations, PeakBytesPerTensorAreTheTablesOnly) {
#if defined(SAFEMODEL_SANITIZER_BUILD)
  // The byte figures are glibc malloc's (malloc_usable_size of each block);
  // under the sanitizers' allocator the peak did not follow the tables
  // (0.0064 bytes a tensor), so the bound is checked in other builds only.
  GTEST_SKIP() << "byte peaks are measured with glibc's allocator";
#endif
  (void)CostFor(10);
  const Cost small = CostFor(10'000);
  const Cost large = CostFor(40'000);
  const double per_tensor = static_cast<double>(large.peak_bytes - small.peak_bytes) / 30'000.0;
  EXPECT_LT(per_tensor, 30.0) << small.peak_bytes << " bytes at the peak for 10,000 tensors, "
                              << large.peak_bytes << " for 40,000";
  EXPECT_GT(per_tensor, 20.0);  // the measure measures: the table is there
}

}  // namespace
}  // namespace safemodel
