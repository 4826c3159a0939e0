// The gather kernel behind loader/stream.cc's tiled path: copies a block of
// a strided 2-D view (a transpose, Fortran order) into C-order rows, with the
// byte swap of big-endian sources fused into the copy.
//
// Trust: none here. The caller (StreamTiled) has proven with CheckElements
// that every element index the arguments can reach is inside `base`.
#ifndef SAFEMODEL_LOADER_TRANSPOSE_H_
#define SAFEMODEL_LOADER_TRANSPOSE_H_

#include <cstdint>

namespace safemodel::loader {

// One tile of rows of the last two dimensions of a view.
struct GatherArgs {
  const uint8_t* base = nullptr;  // the view's first byte
  int64_t start = 0;              // element index of output (row 0, column 0)
  int64_t row_stride = 0;         // element strides of the two dimensions
  int64_t col_stride = 0;
  uint64_t first_row = 0;  // the tile's rows: [first_row, first_row + rows)
  uint64_t rows = 0;
  uint64_t cols = 0;  // every column of each row, [0, cols)
};

// Writes rows x cols elements of `elem` bytes (1, 2, 4, 8 or 16) to `out`,
// C order, row r column c taken from element
// start + (first_row + r) * row_stride + c * col_stride of `base`. If `swap`
// is 2, 4 or 8 (dividing `elem`), every `swap`-byte unit of the output is
// byte-reversed (a big-endian source); 0 or 1: copied as is. False for an
// element size or swap unit outside those.
bool GatherTile(const GatherArgs& a, uint64_t elem, uint32_t swap, uint8_t* out);

// The same result, one element at a time: the reference the tests compare
// GatherTile with.
bool GatherTileNaive(const GatherArgs& a, uint64_t elem, uint32_t swap, uint8_t* out);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_TRANSPOSE_H_
