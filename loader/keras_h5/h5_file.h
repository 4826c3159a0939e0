// A strict, read-only view of an HDF5 file held in memory.
//
// Opening walks the whole object tree once, without recursion, and records
// every group and dataset by path. Only hard links are followed: soft,
// external and user-defined links are refused (they reach other objects or
// other files), and an object reached twice (a cycle or an alias) is a
// malformed file. Every dataset is checked for what would make a reader leave
// the file or load code: virtual layouts (source files), external raw storage
// and filters that are not built in (plugins; h5py's LZF is ours, see
// lzf_filter.h). Those are refused wherever they are, used or not. Whether a
// dataset can become a tensor (datatype, dataspace, declared versus stored
// bytes) is recorded and reported when a caller asks for it as a tensor.
//
// Usage:
//   SAFEMODEL_ASSIGN_OR_RETURN(std::shared_ptr<h5::File> file,
//                              h5::File::Open(input, ctx));
//   if (ctx.refused()) return ctx.RefusedStatus();
//   const h5::Node* w = file->Find("/model_weights");
//   SAFEMODEL_ASSIGN_OR_RETURN(auto names, file->ReadChunkedStrings(*w, "layer_names"));
//
// Worst case: O(o) for o objects (each visited once; hard links and cycles
// found through a keyed table of object addresses), plus libhdf5's own work.
//
// Trust: the file is untrusted. libhdf5 parses it (inside the sandbox only);
// this code bounds what it asks libhdf5 for and checks what comes back.
#ifndef SAFEMODEL_LOADER_KERAS_H5_H5_FILE_H_
#define SAFEMODEL_LOADER_KERAS_H5_H5_FILE_H_

#include <hdf5.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proto/base/keyed_hash.h"
#include "safemodel/dtype.h"
#include "safemodel/status.h"

#include "loader/map_residency.h"
#include "loader/model.h"
#include "loader/parser.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader::h5 {

// Deep enough for every Keras layout (Keras 3 paths reach ~10 levels);
// bounds the walk's worklist.
inline constexpr uint32_t kMaxGroupDepth = 32;
// Objects in one file. The largest Keras file seen has ~1,100; each object
// costs libhdf5 a few KiB to open, so 200k bounds time and memory.
inline constexpr uint64_t kMaxObjects = 200'000;
// Link names longer than this are refused; Keras names are < 300 bytes and
// tensor names (built from them) must stay under safemodel's 4 KiB.
inline constexpr uint64_t kMaxLinkNameBytes = 1024;
// An attribute holding strings: at most this many elements and bytes.
// Keras caps attributes at 64 KiB per chunk; a model_config JSON (a single
// string in the global heap) is the largest, ~100 KiB for MobileNetV2.
inline constexpr uint64_t kMaxAttributeElements = 1u << 20;
inline constexpr uint64_t kMaxAttributeBytes = 64ull << 20;
// Keras splits long string lists into name0, name1, ...; this many chunks
// hold over 64 GiB of names at Keras's 64 KiB per chunk.
inline constexpr uint64_t kMaxAttributeChunks = 1u << 20;
// A chunked or unallocated dataset may declare at most this many times its
// stored bytes: deflate cannot expand by more than ~1032:1, so anything
// beyond is a shape bomb. Small datasets (fill values) are exempt up to
// kSmallDatasetBytes.
inline constexpr uint64_t kMaxExpansion = 1100;
inline constexpr uint64_t kSmallDatasetBytes = 1ull << 20;

// An owned libhdf5 identifier, closed with the right H5*close on destruction.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { Reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void Reset();

 private:
  hid_t id_ = -1;
};

// How a dataset's elements can be produced.
struct DatasetInfo {
  DType dtype = DType::kInvalid;
  std::vector<uint64_t> shape;
  uint32_t swap_unit = 0;  // > 1: stored big-endian
  uint64_t byte_size = 0;  // declared: elements x stored element size
  // A 2-byte float with bfloat16's layout: dtype is kF32 (what h5py
  // returns), read through libhdf5's conversion; byte_size is the stored 2
  // bytes per element.
  bool widen_bf16 = false;
  // Contiguous, allocated and unfiltered: the elements are bytes
  // [image_offset, image_offset + byte_size) of the image, read in place.
  bool in_place = false;
  uint64_t image_offset = 0;
  std::string layout;  // "contiguous" | "compact" | "chunked" (for messages)
  // Not OK: why the dataset cannot be a tensor (reported when it is used).
  Status usable;
};

struct Node {
  enum class Kind { kGroup, kDataset, kDatatype };
  Kind kind = Kind::kGroup;
  std::string path;  // "/" for the root, else "/a/b"
  haddr_t address = HADDR_UNDEF;
  uint32_t depth = 0;
  // Groups: children by link name, in name order (indexes into nodes()).
  std::vector<std::pair<std::string, size_t>> children;
  DatasetInfo dataset;  // datasets only
};

class File {
 public:
  // Opens `image` read-only through the in-memory driver and walks it.
  // Refusals (links, virtual datasets, external storage, filter plugins) go
  // to `ctx`, one finding per occurrence; the caller checks ctx.refused().
  // `image` must outlive the File. PrepareHdf5() must have run.
  static Result<std::shared_ptr<File>> Open(ByteView image, ParseContext& ctx);
  // Members close in reverse order: the file, then its property lists.
  ~File() = default;
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::vector<Node>& nodes() const { return nodes_; }
  const Node& root() const { return nodes_[0]; }
  // The node at an absolute path ("/", "/a/b"), or null.
  const Node* Find(std::string_view path) const;
  // The child of a group by link name, or null.
  const Node* Child(const Node& group, std::string_view name) const;
  // Resolves a '/'-separated path relative to `base` (components must be
  // non-empty and not "." or ".."); null if any component is missing.
  // Malformed if the path itself is not well formed.
  Result<const Node*> Resolve(const Node& base, std::string_view relative) const;

  // Attributes. Trust: values are untrusted; sizes are capped before any
  // allocation and strings must be valid UTF-8.
  //
  // A string-valued attribute: a scalar or 1-D array of fixed-length
  // (NULLTERM, NULLPAD, SPACEPAD) or variable-length strings, ASCII or UTF-8,
  // each read as h5py returns it (a NUL inside a NULLPAD or SPACEPAD string
  // is refused). An empty array of any type is an empty list (Keras writes
  // [] as float64). nullopt if the attribute does not exist.
  Result<std::optional<std::vector<std::string>>> ReadStrings(const Node& node,
                                                              std::string_view name) const;
  // A Keras name list (layer_names, weight_names), as Keras's
  // load_attributes_from_hdf5_group iterates it: `name` if present, else
  // `name0`, `name1`, ... concatenated until one is missing. nullopt if
  // neither exists. Only 1-D arrays are lists: a scalar string (which Keras
  // would iterate character by character) or an empty dataspace is
  // malformed.
  Result<std::optional<std::vector<std::string>>> ReadChunkedStrings(const Node& node,
                                                                     std::string_view name) const;
  // Exactly one string (scalar, or a 1-element array). nullopt if absent.
  Result<std::optional<std::string>> ReadString(const Node& node, std::string_view name) const;
  bool HasAttribute(const Node& node, std::string_view name) const;

  // A tensor for a dataset node: dtype and shape now, the elements later
  // (lazily, when the tensor is streamed: in place from the image, or read
  // through libhdf5 into a buffer of at most `memory_limit` bytes). The
  // tensor's source keeps this File alive.
  Result<Tensor> MakeTensor(const Node& dataset, std::string name, uint64_t memory_limit) const;

  // The libhdf5 file identifier (for code in this module).
  hid_t id() const { return file_.get(); }

 private:
  File() = default;
  Status Walk(ParseContext& ctx);
  Status InspectDataset(hid_t dataset, Node* node, ParseContext& ctx);
  struct FilterPipeline {
    bool refused = false;  // a plugin filter (findings in ctx)
    Status unsupported;    // a built-in filter safemodel does not read
    bool lzf = false;
    uint64_t lzf_chunk_bytes = 0;  // LZF's client value: the decoded chunk size
  };
  // Declared against stored bytes: sets info.in_place for contiguous data
  // inside the image, or info.usable to why the dataset cannot be read.
  void CheckStoredBytes(hid_t dataset, H5D_layout_t layout, const std::string& where,
                        DatasetInfo* info) const;
  Result<FilterPipeline> InspectFilters(hid_t dcpl, const Node& node, ParseContext& ctx);
  static Status CheckLzfChunkBytes(hid_t dcpl, uint64_t chunk_element_bytes, uint64_t declared,
                                   const std::string& where);
  void Refuse(ParseContext& ctx, std::string rule, std::string location, std::string message,
              std::vector<std::string> references);
  Result<Handle> OpenObject(const Node& node) const;
  // `name_list`: a Keras name list, which Keras iterates; a scalar or an
  // empty dataspace is refused.
  Result<std::optional<std::vector<std::string>>> ReadAttributeStrings(hid_t object,
                                                                       std::string_view name,
                                                                       const std::string& path,
                                                                       bool name_list) const;
  Result<std::optional<std::string>> ReadAttributeString(hid_t object, std::string_view name,
                                                         const std::string& path) const;

  std::weak_ptr<File> self_;
  ByteView image_;
  uint64_t base_address_ = 0;
  // The driver's reads of a droppable input map; before the handles, which
  // read through it until they are closed.
  MapResidency residency_;
  Handle fapl_;
  Handle lapl_;
  Handle file_;
  uint64_t refusals_ = 0;
  std::vector<Node> nodes_;
  KeyedStringMap<size_t> by_path_;  // paths come from the file: keyed hash
};

}  // namespace safemodel::loader::h5

#endif  // SAFEMODEL_LOADER_KERAS_H5_H5_FILE_H_
