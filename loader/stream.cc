#include "loader/stream.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "loader/transpose.h"

namespace safemodel::loader {

namespace {

// Wide enough for any sum of rank x (dimension x stride) terms.
__extension__ using Int128 = __int128;

// Reverses the bytes of every whole T-sized unit in p[0, n_bytes).
template <typename T>
void SwapEach(uint8_t* p, uint64_t n_bytes) {
  for (uint64_t i = 0; i + sizeof(T) <= n_bytes; i += sizeof(T)) {
    T v;
    std::memcpy(&v, p + i, sizeof(T));
    if constexpr (sizeof(T) == 2) {
      v = __builtin_bswap16(v);
    } else if constexpr (sizeof(T) == 4) {
      v = __builtin_bswap32(v);
    } else {
      v = __builtin_bswap64(v);
    }
    std::memcpy(p + i, &v, sizeof(T));
  }
}

void SwapUnits(uint8_t* p, uint64_t n_bytes, uint32_t unit) {
  switch (unit) {
    case 2:
      return SwapEach<uint16_t>(p, n_bytes);
    case 4:
      return SwapEach<uint32_t>(p, n_bytes);
    case 8:
      return SwapEach<uint64_t>(p, n_bytes);
    default:
      return;
  }
}

bool IsCContiguous(const std::vector<int64_t>& strides, std::span<const uint64_t> shape) {
  if (strides.empty()) return true;
  int64_t expect = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1 && strides[d] != expect) return false;
    expect *= static_cast<int64_t>(shape[d]);
  }
  return true;
}

// Collects bytes into a chunk buffer and hands full chunks to the sink.
// The buffer is not zeroed: only its first used_ bytes, each copied in by
// Append, ever reach the sink (the rule in model.h).
class ChunkBuffer {
 public:
  explicit ChunkBuffer(ChunkSink& sink) : sink_(sink), buf_(new uint8_t[kChunkBytes]) {}
  // Appends n bytes from p (n <= kChunkBytes).
  Status Append(const uint8_t* p, uint64_t n, uint32_t swap) {
    if (used_ + n > kChunkBytes) SAFEMODEL_RETURN_IF_ERROR(Flush());
    std::memcpy(buf_.get() + used_, p, n);
    if (swap > 1) SwapUnits(buf_.get() + used_, n, swap);
    used_ += n;
    return Status::Ok();
  }
  Status Flush() {
    if (used_ == 0) return Status::Ok();
    Status s = sink_.Write(ByteView(buf_.get(), used_));
    used_ = 0;
    return s;
  }

 private:
  ChunkSink& sink_;
  std::unique_ptr<uint8_t[]> buf_;
  uint64_t used_ = 0;
};

}  // namespace

Result<ByteView> ElementBytes(const Elements& e, DType dtype, std::span<const uint64_t> shape,
                              std::string_view what) {
  // The message text only on a failure: this runs for every tensor.
  auto w = [what] { return std::string(what); };
  const uint64_t elem = DTypeSize(dtype);
  if (elem == 0) return Status::Internal(w() + ": invalid dtype");
  if (e.swap_unit > 1 &&
      ((e.swap_unit != 2 && e.swap_unit != 4 && e.swap_unit != 8) || elem % e.swap_unit != 0)) {
    return Status::Internal(w() + ": swap unit " + Num(e.swap_unit) + " does not fit the dtype");
  }
  if (!e.strides.empty() && e.strides.size() != shape.size()) {
    return Status::Malformed(w() + ": " + Num(e.strides.size()) + " strides for rank " +
                             Num(shape.size()));
  }
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t count, ElementCount(shape, what));
  if (count == 0) return ByteView();
  const uint64_t capacity = e.view.size() / elem;
  if (e.strides.empty()) {
    uint64_t end;
    if (!CheckedAdd(e.offset, count, &end) || end > capacity) {
      return Status::Malformed(w() + ": needs " + Num(count) + " elements from element " +
                               Num(e.offset) + " but the data holds only " + Num(capacity));
    }
    return e.view.subspan(e.offset * elem, count * elem);
  }
  // The lowest and highest element index any multi-index can reach.
  Int128 lo = e.offset, hi = e.offset;
  for (size_t d = 0; d < shape.size(); ++d) {
    Int128 span = static_cast<Int128>(shape[d] - 1) * e.strides[d];
    if (span > static_cast<Int128>(capacity) || -span > static_cast<Int128>(capacity)) {
      return Status::Malformed(w() + ": stride " + std::to_string(e.strides[d]) + " of dimension " +
                               Num(d) + " reaches outside the data");
    }
    (span > 0 ? hi : lo) += span;
  }
  if (lo < 0 || hi >= static_cast<Int128>(capacity)) {
    return Status::Malformed(w() + ": offset and strides reach outside the " + Num(capacity) +
                             " elements of the data");
  }
  // Inside the view: 0 <= lo <= hi < capacity.
  return e.view.subspan(static_cast<uint64_t>(lo) * elem, static_cast<uint64_t>(hi - lo + 1) * elem);
}

Status CheckElements(const Elements& e, DType dtype, std::span<const uint64_t> shape,
                     std::string_view what) {
  return ElementBytes(e, dtype, shape, what).status();
}

namespace {

// A bool element is one byte, 0 or 1 (FORMAT.md). numpy, torch and h5py
// store other bytes if asked to, and readers disagree on what they mean, so
// such a tensor is refused rather than normalised or passed on.
class BoolCheckSink final : public ChunkSink {
 public:
  BoolCheckSink(ChunkSink& next, std::string_view what) : next_(next), what_(what) {}
  Status Write(ByteView chunk) override {
    if (size_t i = FirstNonBool(chunk); i < chunk.size()) {
      return Status::Malformed(std::string(what_) + ": bool element " + Num(seen_ + i) +
                               " holds the byte " + Num(chunk[i]) + " (a bool is 0 or 1)");
    }
    seen_ += chunk.size();
    return next_.Write(chunk);
  }

 private:
  ChunkSink& next_;
  std::string_view what_;
  uint64_t seen_ = 0;
};

// Advances `idx`, a multi-index over the first idx.size() dimensions of
// `shape`, last dimension fastest; false once every index has been visited
// (at once for an empty index).
bool NextIndex(std::vector<uint64_t>& idx, std::span<const uint64_t> shape) {
  for (size_t d = idx.size(); d-- > 0;) {
    if (++idx[d] < shape[d]) return true;
    idx[d] = 0;
  }
  return false;
}

// Element index of the first element under the outer multi-index `idx`.
int64_t OuterStart(const Elements& e, const std::vector<uint64_t>& idx) {
  int64_t start = static_cast<int64_t>(e.offset);
  for (size_t d = 0; d < idx.size(); ++d) start += static_cast<int64_t>(idx[d]) * e.strides[d];
  return start;
}

// Views whose last dimension is strided (a transpose, Fortran order) read
// one element per cache line when walked row by row (2.55 s for a 1 GiB
// Fortran array, 1.87 s tiled). They are gathered instead a tile at a time:
// up to kTileRows output rows of the last two dimensions, by the blocked
// kernel of loader/transpose.h, which also swaps the bytes. The output order
// is unchanged; the tile buffer is a bounded constant (kTileBytes).
constexpr uint64_t kTileBytes = 4 << 20;
constexpr uint64_t kTileRows = 64;

// `e` has been checked by CheckElements: every index reached is in bounds.
// GatherTile swaps the bytes as it gathers; each tile goes to the sink directly.
Status StreamTiled(const Elements& e, uint64_t elem, uint32_t swap,
                   std::span<const uint64_t> shape, ChunkSink& sink) {
  const size_t rank = shape.size();
  GatherArgs g;
  g.base = e.view.data();
  g.row_stride = e.strides[rank - 2];
  g.col_stride = e.strides[rank - 1];
  g.cols = shape[rank - 1];
  const uint64_t rows_total = shape[rank - 2];
  const uint64_t row_bytes = g.cols * elem;
  const uint64_t tile_rows = std::clamp<uint64_t>(kTileBytes / row_bytes, 1, kTileRows);
  // Not zeroed: GatherTile writes each of a tile's rows x cols elements
  // before its rows are sent.
  std::unique_ptr<uint8_t[]> tile(new uint8_t[tile_rows * row_bytes]);
  const uint64_t step = kChunkBytes - kChunkBytes % elem;
  std::vector<uint64_t> idx(rank - 2, 0);
  do {
    g.start = OuterStart(e, idx);
    for (uint64_t r0 = 0; r0 < rows_total; r0 += tile_rows) {
      g.first_row = r0;
      g.rows = std::min(tile_rows, rows_total - r0);
      if (!GatherTile(g, elem, swap, tile.get())) {
        return Status::Internal("element size " + Num(elem) + " has no gather");
      }
      const uint64_t total = g.rows * row_bytes;
      for (uint64_t done = 0; done < total;) {
        const uint64_t n = std::min(step, total - done);
        SAFEMODEL_RETURN_IF_ERROR(sink.Write(ByteView(tile.get() + done, n)));
        done += n;
      }
    }
  } while (NextIndex(idx, shape));
  return Status::Ok();
}

Status StreamChecked(const Elements& e, DType dtype, std::span<const uint64_t> shape,
                     std::string_view what, ChunkSink& sink) {
  SAFEMODEL_RETURN_IF_ERROR(CheckElements(e, dtype, shape, what));
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t count, ElementCount(shape, what));
  if (count == 0) return Status::Ok();
  const uint64_t elem = DTypeSize(dtype);
  const uint32_t swap = e.swap_unit > 1 ? e.swap_unit : 0;

  if (IsCContiguous(e.strides, shape)) {
    const uint8_t* p = e.view.data() + e.offset * elem;
    const uint64_t total = count * elem;
    if (swap == 0) {
      for (uint64_t done = 0; done < total;) {
        uint64_t n = std::min(kChunkBytes, total - done);
        SAFEMODEL_RETURN_IF_ERROR(sink.Write(ByteView(p + done, n)));
        done += n;
      }
      return Status::Ok();
    }
    ChunkBuffer out(sink);
    const uint64_t step = kChunkBytes - kChunkBytes % elem;
    for (uint64_t done = 0; done < total;) {
      uint64_t n = std::min(step, total - done);
      SAFEMODEL_RETURN_IF_ERROR(out.Append(p + done, n, swap));
      done += n;
    }
    return out.Flush();
  }

  const size_t rank = shape.size();
  const uint64_t inner = shape[rank - 1];
  // A last dimension of size 1 is never stepped: its stride (any value for
  // such a dimension, INT64_MAX in a real torch.as_strided file) must not be
  // added after the element (signed overflow; found by the loader fuzzer).
  const int64_t inner_stride = inner == 1 ? 1 : e.strides[rank - 1];
  if (rank >= 2 && inner_stride != 1 && shape[rank - 2] > 1 && inner * elem <= kTileBytes) {
    return StreamTiled(e, elem, swap, shape, sink);
  }
  // Strided: walk the outer dimensions with a counter, copy inner rows.
  ChunkBuffer out(sink);
  std::vector<uint64_t> idx(rank - 1, 0);
  const uint8_t* base = e.view.data();
  do {
    const int64_t start = OuterStart(e, idx);
    if (inner_stride == 1) {
      const uint8_t* row = base + static_cast<uint64_t>(start) * elem;
      const uint64_t row_bytes = inner * elem;
      const uint64_t step = kChunkBytes - kChunkBytes % elem;
      for (uint64_t done = 0; done < row_bytes;) {
        uint64_t n = std::min(step, row_bytes - done);
        SAFEMODEL_RETURN_IF_ERROR(out.Append(row + done, n, swap));
        done += n;
      }
    } else {
      int64_t pos = start;
      for (uint64_t i = 0; i < inner; ++i, pos += inner_stride) {
        SAFEMODEL_RETURN_IF_ERROR(out.Append(base + static_cast<uint64_t>(pos) * elem, elem, swap));
      }
    }
  } while (NextIndex(idx, shape));
  return out.Flush();
}

}  // namespace

Status StreamElements(const Elements& e, DType dtype, std::span<const uint64_t> shape,
                      std::string_view what, ChunkSink& sink) {
  if (dtype == DType::kBool) {
    BoolCheckSink checked(sink, what);
    return StreamChecked(e, dtype, shape, what, checked);
  }
  return StreamChecked(e, dtype, shape, what, sink);
}

}  // namespace safemodel::loader
