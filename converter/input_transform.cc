#include "converter/input_transform.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>

#include "loader/model.h"

namespace safemodel {

namespace {

// Reads exactly n bytes at `offset`; an input that shrank or failed under us
// is the parent's I/O error, not the worker's doing.
Status PreadFull(int fd, uint8_t* out, uint64_t n, uint64_t offset) {
  for (uint64_t done = 0; done < n;) {
    const ssize_t r = pread(fd, out + done, static_cast<size_t>(n - done), static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return Status::IoError("reading the input at byte " + std::to_string(offset + done) + " failed" +
                             (r < 0 ? std::string(": ") + std::strerror(errno)
                                    : std::string(" (it shrank during the conversion)")) +
                             "; nothing was written");
    }
    done += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

constexpr std::string_view kWhat = "the transformed tensor";

Status StreamContiguous(int fd, const protocol::TensorXform& x, const protocol::XformPlan& plan, DType dtype,
                        XformBuffers& buffers, loader::ChunkSink& sink) {
  const uint64_t start = x.region_offset + x.first * x.elem_size;
  const uint64_t piece = std::min(plan.bytes, kXformPieceBytes);  // a multiple of every element size
  uint8_t* buf = buffers.Get(0, piece);
  if (buf == nullptr) return Status::LimitExceeded("cannot allocate the transform's read buffers");
  for (uint64_t done = 0; done < plan.bytes;) {
    const uint64_t n = std::min(piece, plan.bytes - done);
    SAFEMODEL_RETURN_IF_ERROR(PreadFull(fd, buf, n, start + done));
    loader::Elements e;
    e.view = ByteView(buf, n);
    e.swap_unit = x.swap_unit;
    const uint64_t count = n / x.elem_size;
    SAFEMODEL_RETURN_IF_ERROR(loader::StreamElements(e, dtype, std::span<const uint64_t>(&count, 1), kWhat, sink));
    done += n;
  }
  return Status::Ok();
}

// Bands of plan.band_rows indices of dimension 0. In a band, the run of
// dimension 0 under each multi-index j of the other dimensions (C order) is
// read to buf[j * rows]: the band is then a rows x row_elements matrix of
// strides (1, rows), which loader::StreamElements transposes (and swaps)
// into the output's C-order rows. Runs adjacent in the input are read at
// once.
class BandReader {
 public:
  BandReader(int fd, const protocol::TensorXform& x, const protocol::XformPlan& plan)
      : fd_(fd), x_(x), plan_(plan) {}

  uint64_t Rows(uint64_t b0) const { return std::min(plan_.band_rows, x_.shape[0] - b0); }

  // Reads the band starting at index b0 of dimension 0 into `buf`.
  Status Read(uint64_t b0, uint8_t* buf) const {
    const uint64_t e = x_.elem_size;
    const uint64_t rows = Rows(b0);
    // Element index of (b0, 0, ..., 0); CheckTensorXform proved every
    // element of the view inside the region, so each run is as well.
    int64_t at = static_cast<int64_t>(x_.first + b0);
    uint64_t idx[protocol::kMaxXformRank] = {};
    uint64_t pending_off = 0, pending_len = 0, pending_dst = 0;
    for (uint64_t j = 0; j < plan_.row_elements; ++j) {
      const uint64_t off = x_.region_offset + static_cast<uint64_t>(at) * e;
      if (pending_len > 0 && pending_off + pending_len == off) {
        pending_len += rows * e;
      } else {
        if (pending_len > 0) SAFEMODEL_RETURN_IF_ERROR(PreadFull(fd_, buf + pending_dst, pending_len, pending_off));
        pending_off = off;
        pending_len = rows * e;
        pending_dst = j * rows * e;
      }
      // The next multi-index of dimensions 1..rank-1, last fastest.
      for (uint32_t d = x_.rank; d-- > 1;) {
        at += x_.strides[d];
        if (++idx[d] < x_.shape[d]) break;
        at -= static_cast<int64_t>(x_.shape[d]) * x_.strides[d];
        idx[d] = 0;
      }
    }
    return pending_len > 0 ? PreadFull(fd_, buf + pending_dst, pending_len, pending_off) : Status::Ok();
  }

 private:
  const int fd_;
  const protocol::TensorXform& x_;
  const protocol::XformPlan& plan_;
};

// The next band is read on a thread of its own while this one is
// transposed, digested and written: the reads are a third of the work
// (tests/bench/PROFILE.md, branch `parentxform`). One thread per band (64
// for a 1 GiB array), joined before the band is used or on any return.
class BandPrefetch {
 public:
  ~BandPrefetch() { Join(); }
  // Starts reading band b0 into buf; reads it here if no thread can start.
  void Start(const BandReader& reader, uint64_t b0, uint8_t* buf) {
    try {
      thread_ = std::thread([this, &reader, b0, buf] {
        // An exception must not leave the thread (std::terminate): a
        // message string that cannot be allocated ends as a limit.
        try {
          status_ = reader.Read(b0, buf);
        } catch (...) {
          status_ = Status::LimitExceeded("out of memory while reading a band of the input");
        }
      });
    } catch (...) {  // no thread (std::system_error) or no memory for one (std::bad_alloc)
      status_ = reader.Read(b0, buf);
    }
  }
  Status Wait() {
    Join();
    return status_;
  }

 private:
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  std::thread thread_;
  Status status_;
};

Status StreamBands(int fd, const protocol::TensorXform& x, const protocol::XformPlan& plan, DType dtype,
                   XformBuffers& buffers, loader::ChunkSink& sink) {
  const uint64_t band_bytes = plan.band_rows * plan.row_elements * x.elem_size;
  // Every rows x row_elements element of a band is read before it is sent.
  uint8_t* const bufs[2] = {buffers.Get(0, band_bytes), buffers.Get(1, band_bytes)};
  if (bufs[0] == nullptr || bufs[1] == nullptr) {
    return Status::LimitExceeded("cannot allocate the transform's read buffers");
  }
  const BandReader reader(fd, x, plan);
  BandPrefetch next;  // declared after what its thread uses: joined first
  SAFEMODEL_RETURN_IF_ERROR(reader.Read(0, bufs[0]));
  int cur = 0;
  for (uint64_t b0 = 0; b0 < x.shape[0]; b0 += plan.band_rows) {
    const uint64_t rows = reader.Rows(b0);
    const uint64_t b1 = b0 + plan.band_rows;
    if (b1 < x.shape[0]) next.Start(reader, b1, bufs[1 - cur]);
    loader::Elements band;
    band.view = ByteView(bufs[cur], rows * plan.row_elements * x.elem_size);
    band.swap_unit = x.swap_unit;
    band.strides = {1, static_cast<int64_t>(rows)};
    const uint64_t shape[2] = {rows, plan.row_elements};
    SAFEMODEL_RETURN_IF_ERROR(loader::StreamElements(band, dtype, shape, kWhat, sink));
    if (b1 < x.shape[0]) SAFEMODEL_RETURN_IF_ERROR(next.Wait());
    cur = 1 - cur;
  }
  return Status::Ok();
}

}  // namespace

void XformBuffers::Free::operator()(uint8_t* p) const { std::free(p); }

// Bands of 16 MiB in 2 MiB pages where the kernel allows them
// (transparent huge pages on request): 16 faults per band buffer instead of
// 4,096 (8,934 -> 755 faults for the 1 GiB benchmark array; its CPU saving
// was within the noise of a loaded machine: tests/bench/PROFILE.md, branch
// `parentxform`).
constexpr uint64_t kHugePageBytes = 2 << 20;

uint8_t* XformBuffers::Get(int i, uint64_t bytes) {
  if (bytes > size_) {
    bufs_[0].reset();
    bufs_[1].reset();
    size_ = 0;
    const bool huge = bytes >= kHugePageBytes;
    const uint64_t size = huge ? (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes : bytes;
    for (auto& b : bufs_) {
      b.reset(static_cast<uint8_t*>(huge ? std::aligned_alloc(kHugePageBytes, size) : std::malloc(size)));
      if (!b) return nullptr;
      if (huge) (void)madvise(b.get(), size, MADV_HUGEPAGE);  // a hint: failure changes nothing
    }
    size_ = bytes;
  }
  return bufs_[i].get();
}

Status StreamInputTransform(int input_fd, const protocol::TensorXform& x, const protocol::XformPlan& plan,
                            DType dtype, XformBuffers& buffers, loader::ChunkSink& sink) {
  if (DTypeSize(dtype) != x.elem_size || dtype == DType::kBool) {
    return Status::Internal("a tensor transform for the wrong dtype");
  }
  if (plan.layout == protocol::XformLayout::kContiguous) {
    return StreamContiguous(input_fd, x, plan, dtype, buffers, sink);
  }
  return StreamBands(input_fd, x, plan, dtype, buffers, sink);
}

}  // namespace safemodel
