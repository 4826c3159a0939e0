// h5py's LZF compression (HDF5 filter 32000), read without any plugin.
//
// h5py registers LZF with libhdf5 itself (h5py/__init__ calls
// h5z._register_lzf()), so every h5py user reads `compression="lzf"` files
// without a plugin. safemodel registers its own decoder for the same id in
// the worker, before lockdown; plugin loading stays switched off, so no
// other code can answer for the id.
//
// LZF stream format (liblzf): a sequence of items, each starting with a
// control byte c.
//   c < 32:  a literal run: the next c + 1 bytes are copied to the output.
//   c >= 32: a back reference of length L = c >> 5 (if L == 7, the next byte
//            is added to it), then a distance byte d; it copies L + 2 bytes
//            from (c & 31) * 256 + d + 1 bytes back in the output, byte by
//            byte (a copy may overlap its own output).
//
// h5py's writer stores (4, 0x0105, chunk bytes) as the filter's client
// values. Trust: chunks are untrusted; every read and write is bounded here.
// Worst case: O(output) per chunk, the output at most the chunk size libhdf5
// declares.
#ifndef SAFEMODEL_LOADER_KERAS_H5_LZF_FILTER_H_
#define SAFEMODEL_LOADER_KERAS_H5_LZF_FILTER_H_

#include <hdf5.h>

#include <cstdint>
#include <string>

#include "safemodel/status.h"

#include "proto/base/byte_reader.h"

namespace safemodel::loader::h5 {

// h5py's registered id (H5PY_FILTER_LZF).
inline constexpr H5Z_filter_t kLzfFilterId = 32000;
// Index of the chunk's byte size among the filter's client values.
inline constexpr size_t kLzfChunkBytesValue = 2;

// Decodes `in` into exactly out_size bytes at `out`. An error (naming the
// input offset) if the stream reads past its end, refers before the start of
// the output, would write more than out_size bytes, or ends short of it.
Status LzfDecompress(ByteView in, uint8_t* out, uint64_t out_size);

// Registers the decoder with libhdf5 for kLzfFilterId (decoding only; any
// attempt to compress fails). Once per process, before lockdown.
Status RegisterLzfFilter();

// Why the last LZF chunk decode on this thread failed ("" if none), then
// cleared: libhdf5 reports only that a filter failed.
std::string TakeLzfError();

}  // namespace safemodel::loader::h5

#endif  // SAFEMODEL_LOADER_KERAS_H5_LZF_FILTER_H_
