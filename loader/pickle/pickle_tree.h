// Value-side pieces of the graph conversion (pickle_convert.cc): how a
// float key is rendered, half floats, the bounds proof of a strided view,
// and the architecture tree of a pickled nn.Module. None of them reads the
// graph.
//
// Worst case: CheckView is O(rank); ModuleArchitecture is O(nodes of the
// metadata tree), iterative.
//
// Trust: shapes, strides and trees come from an untrusted file; they are
// already bounded by the conversion's limits (kMaxValueNodes, ranks).
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_TREE_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_TREE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "safemodel/status.h"
#include "safemodel/value.h"

namespace safemodel::loader::pickle {

// Python's repr of a float ("1.0", "nan", "-inf").
std::string FloatRepr(double f);

// An IEEE half as a double.
double HalfToDouble(uint16_t h);

// The C-contiguous strides (elements) of `shape`, which a tensor saved
// without strides has and most tensors state: the last dimension's 1, each
// other the product of the sizes after it, a size 0 counting as 1. nullopt
// when a product (the whole shape's included) passes int64. The
// one definition both the handlers (which keep a tensor's strides only when
// they differ from these) and the emission (which fills them in) use.
std::optional<std::vector<int64_t>> CContiguousStrides(std::span<const uint64_t> shape);
// Whether `strides` are CContiguousStrides(shape), without making them (the
// handlers ask once per tensor).
bool IsCContiguous(std::span<const uint64_t> shape, std::span<const int64_t> strides);

// Malformed (naming `what`) unless every element of the view of `shape`
// and `strides` (elements) from `offset` lies inside `capacity` elements.
Status CheckView(const std::vector<uint64_t>& shape, const std::vector<int64_t>& strides,
                 uint64_t offset, uint64_t capacity, const std::string& what);

// The architecture of a module tree: {class, training, config, parameters,
// buffers, children}, from the metadata Value of a root nn.Module.
Value ModuleArchitecture(const Value& root);

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_TREE_H_
