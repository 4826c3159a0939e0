// What a format parser produces: a plain description of the model (tensors,
// architecture, metadata, findings) plus, for each tensor, a source that
// yields its bytes on demand. No behaviour beyond producing bytes.
//
// Tensor bytes are produced lazily, one tensor at a time, when the worker
// streams them, so that memory stays bounded by the largest tensor rather
// than by the file. A source describes the elements as a strided array over
// some bytes (usually the read-only map of the input, zero copy); the shared
// streaming code (stream.h) turns that into little-endian C-order bytes.
//
// Trust: what a parser puts here comes from an untrusted file; stream.h
// proves every view in bounds before reading it, and the parent checks the
// whole description again.
#ifndef SAFEMODEL_LOADER_MODEL_H_
#define SAFEMODEL_LOADER_MODEL_H_

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "loader/inline_dims.h"
#include "proto/base/byte_reader.h"
#include "safemodel/dtype.h"
#include "safemodel/finding.h"
#include "safemodel/status.h"
#include "safemodel/value.h"

namespace safemodel::loader {

// A heap buffer for tensor bytes, zero-filled on allocation.
//
// The rule for every buffer a tensor is written into: its bytes are fully
// defined before the tensor is streamed, so that no byte of the worker's
// memory (heap pointers, an earlier tensor) can reach the output. Buffers
// that a library fills are zeroed here, because a library may leave parts
// untouched on purpose: libhdf5 writes nothing for storage that was never
// allocated when the fill time is "never" (h5py returns zeros there, from its
// np.zeros buffer). calloc costs nothing for large buffers (fresh mmap pages
// are zero) and one memset for reused heap memory. Allocation failure is a
// LimitExceeded status.
class OwnedBuffer {
 public:
  static Result<OwnedBuffer> Allocate(uint64_t size, std::string_view what);
  OwnedBuffer() = default;
  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  uint64_t size() const { return size_; }
  ByteView view() const { return ByteView(data_.get(), size_); }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> data_;
  uint64_t size_ = 0;
};

// The elements of one tensor as a strided array over `view`.
struct Elements {
  // Memory the elements live in (from the first element's byte): a view of
  // the input map, or of `owned`.
  ByteView view;
  // Keeps produced bytes alive (an inflated zip member, an HDF5 read);
  // `view` then points into it. Moving Elements keeps `view` valid.
  OwnedBuffer owned;
  // 0 or 1: elements are little-endian already. 2, 4, 8: swap every unit of
  // this many bytes (big-endian input; complex types swap each component).
  uint32_t swap_unit = 0;
  // Element strides, one per dimension (may be 0, as torch's expand makes,
  // or negative); empty means C-contiguous. `offset` is the element index of
  // element [0, ..., 0] within `view`.
  std::vector<int64_t> strides;
  uint64_t offset = 0;
};

// The shape of a tensor: up to four dimensions held in the object itself
// (a 5-D convolution kernel spills to the heap); see inline_dims.h.
using Shape = InlineDims<uint64_t, 4>;

// The plain per-tensor words a producer reads (see ElementProducer); what
// they mean is the producer's.
struct SourceArgs {
  uint64_t a = 0;
  uint64_t b = 0;
  uint32_t c = 0;
  uint32_t d = 0;
};

// Produces tensors' elements from plain descriptors. One producer serves all
// tensors of a parse (it lives in ParsedModel::keepalive, or is static), so
// that a tensor's source is a pointer and a few words, not a heap closure.
class ElementProducer {
 public:
  virtual ~ElementProducer() = default;
  virtual Result<Elements> Produce(const SourceArgs& args) const = 0;
};

// Produces a tensor's elements. Called once, when the tensor is streamed.
// Either a producer with its words (no allocation) or, for formats whose
// tensors need more state than that, any callable (held on the heap).
// Move-only.
class ElementSource {
 public:
  ElementSource() = default;
  ElementSource(std::nullptr_t) {}  // NOLINT: `source = nullptr` drops it
  // `producer` outlives the source (keepalive or static).
  ElementSource(const ElementProducer* producer, SourceArgs args) : producer_(producer), args_(args) {}
  template <typename F>
    requires std::is_invocable_r_v<Result<Elements>, const F&> &&
             (!std::is_same_v<std::decay_t<F>, ElementSource>)
  ElementSource(F fn)  // NOLINT: a lambda is a source
      : owned_(std::make_unique<Callable<std::decay_t<F>>>(std::move(fn))) {
    producer_ = owned_.get();
  }
  // A moved-from source is empty, as a moved-from std::function was.
  ElementSource(ElementSource&& other) noexcept
      : producer_(std::exchange(other.producer_, nullptr)), args_(other.args_), owned_(std::move(other.owned_)) {}
  ElementSource& operator=(ElementSource&& other) noexcept {
    if (this != &other) {
      producer_ = std::exchange(other.producer_, nullptr);
      args_ = other.args_;
      owned_ = std::move(other.owned_);
    }
    return *this;
  }

  Result<Elements> operator()() const { return producer_->Produce(args_); }
  explicit operator bool() const { return producer_ != nullptr; }

 private:
  template <typename F>
  struct Callable final : ElementProducer {
    explicit Callable(F f) : fn(std::move(f)) {}
    Result<Elements> Produce(const SourceArgs&) const override { return fn(); }
    F fn;
  };
  const ElementProducer* producer_ = nullptr;
  SourceArgs args_;
  std::unique_ptr<ElementProducer> owned_;  // a callable's
};

// A source over bytes that are already in memory (typically the input map).
// Without strides or offset it is a plain descriptor (no allocation).
ElementSource ViewSource(ByteView bytes, uint32_t swap_unit = 0,
                         std::vector<int64_t> strides = {}, uint64_t offset = 0);

// Tells where tensors are in the input, for messages, built only when a
// message needs it. Like ElementProducer, one teller serves many tensors.
class OriginTeller {
 public:
  virtual ~OriginTeller() = default;
  virtual std::string Tell(uint64_t arg, std::string_view tensor_name) const = 0;
};

// Where a tensor is in the input ("npz member 'w.npy'"), for messages: a
// fixed text or a teller and its word. Empty when the parser gave none
// (callers then name the tensor). Move-only.
class Origin {
 public:
  Origin() = default;
  Origin(std::string text);        // NOLINT: a text is an origin
  Origin(const char* text) : Origin(std::string(text)) {}  // NOLINT
  Origin(const OriginTeller* teller, uint64_t arg) : teller_(teller), arg_(arg) {}
  Origin(Origin&& other) noexcept
      : teller_(std::exchange(other.teller_, nullptr)), arg_(other.arg_), owned_(std::move(other.owned_)) {}
  Origin& operator=(Origin&& other) noexcept {
    if (this != &other) {
      teller_ = std::exchange(other.teller_, nullptr);
      arg_ = other.arg_;
      owned_ = std::move(other.owned_);
    }
    return *this;
  }

  bool empty() const { return teller_ == nullptr; }
  // The text ("" when empty); `tensor_name` is the tensor's name.
  std::string Text(std::string_view tensor_name) const {
    return teller_ == nullptr ? std::string() : teller_->Tell(arg_, tensor_name);
  }

 private:
  struct Fixed;
  const OriginTeller* teller_ = nullptr;
  uint64_t arg_ = 0;
  std::unique_ptr<OriginTeller> owned_;  // a fixed text's
};

// A name that few tensors have (an alias's target): one pointer when
// absent, not an empty 32-byte string per tensor.
class OptionalName {
 public:
  OptionalName() = default;
  OptionalName(const OptionalName& other) { *this = other.str(); }
  OptionalName(OptionalName&&) noexcept = default;
  OptionalName& operator=(const OptionalName& other) {
    if (this != &other) *this = other.str();
    return *this;
  }
  OptionalName& operator=(OptionalName&&) noexcept = default;
  // An empty name is none.
  OptionalName& operator=(std::string name) {
    name_ = name.empty() ? nullptr : std::make_unique<std::string>(std::move(name));
    return *this;
  }

  bool empty() const { return name_ == nullptr; }
  // The name, "" when there is none.
  const std::string& str() const;
  friend bool operator==(const OptionalName& a, std::string_view b) { return a.str() == b; }

 private:
  std::unique_ptr<std::string> name_;
};

struct Tensor {
  std::string name;  // unique within the model; the parser makes it so
  DType dtype = DType::kInvalid;
  Shape shape;
  // Non-empty: the same bytes as the named tensor (tied weights); no source.
  OptionalName alias_of;
  ElementSource source;
  // Where the tensor is in the input, for messages ("npz member 'w.npy'").
  Origin origin;
  // Position in ParsedModel::tensors as the parser produced it, which is the
  // source's order (the order the format's real loader lists the tensors;
  // loader/README.md per format). Set by the worker before it sorts by name.
  uint64_t source_index = 0;

  // origin's text, or `fallback` when the parser gave none.
  std::string Where(std::string_view fallback) const {
    return origin.empty() ? std::string(fallback) : origin.Text(name);
  }
};

struct ParsedModel {
  // Parser state the sources need (an open HDF5 file, a zip archive, an
  // inflated member). Declared first so that it is destroyed last, after
  // every source.
  std::vector<std::shared_ptr<void>> keepalive;
  std::string source_format;  // lower-case identifier: "npy", "npz", "keras_h5", ...
  // In the source's order (see Tensor::source_index); the worker sorts.
  std::vector<Tensor> tensors;
  Value architecture;         // null when there is none
  Value metadata;             // a map, or null
  std::vector<Finding> findings;  // dropped items and notes (refusals go with the error)
};

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_MODEL_H_
