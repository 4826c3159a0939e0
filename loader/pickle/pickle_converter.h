// The conversion of a pickle graph into tensors and trees (pickle_convert.h:
// ConvertGraph), as one object whose work two sources share:
// pickle_convert.cc walks the graph from its root, pickle_emit.cc turns the
// tensors the walk found into the model's Tensors. Internal to loader/pickle.
//
// Worst case and trust: pickle_convert.h.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_CONVERTER_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_CONVERTER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "safemodel/limits.h"

#include "loader/pickle/pickle_convert.h"
#include "loader/pickle/torch_sources.h"
#include "proto/base/keyed_hash.h"

namespace safemodel::loader::pickle::internal {

class Converter {
 public:
  Converter(std::shared_ptr<Graph> graph, const ConvertSettings& settings, ParseContext& ctx,
            ParsedModel* out)
      : keep_(std::move(graph)),
        g_(*keep_),
        s_(settings),
        ctx_(ctx),
        out_(out),
        on_path_(g_.objects.size(), 0) {}

  Result<Converted> Run(Ref root);

 private:
  struct Work {
    Ref ref;
    Value* slot;
    std::string name;  // tensor-name path
    uint32_t depth;
    bool exit = false;  // leaving a container: clear its on-path mark
  };

  std::string JoinName(const std::string& base, std::string_view part) const {
    if (base.empty()) return std::string(part);
    return base + "." + std::string(part);
  }
  Status Count(uint32_t depth) {
    if (++nodes_ > kMaxValueNodes) {
      return Status::LimitExceeded(s_.where + ": the data expands to more than " +
                                   Num(kMaxValueNodes) +
                                   " values (shared objects are expanded each time they are used)");
    }
    if (depth > kMaxValueDepth) {
      return Status::LimitExceeded(s_.where + ": the data nests deeper than " +
                                   Num(kMaxValueDepth) + " levels");
    }
    return Status::Ok();
  }
  Result<std::string> KeyString(Ref key);
  // The text of a kStr the walk reads, told to ConvertSettings::name_read.
  std::string_view NameText(Ref str) {
    const std::string_view text = g_.text(str);
    if (s_.name_read) s_.name_read(AsBytes(text));
    return text;
  }
  void NoteEmbeddedPickle(ByteView bytes, const std::string& name);
  Status Visit(const Work& w);
  Status EnterContainer(ObjId id, const Work& w);
  Status AddMapChildren(Value* slot, std::span<const Ref> items, const Work& w, bool module_state,
                        size_t reserved);
  Status VisitRecord(const Work& w);
  Status VisitTensor(const Work& w, const Object& o);
  Status VisitSparse(const Work& w, const TensorInfo& t);
  Status AddQuantized(const Work& w, const TensorInfo& t, const std::string& name);
  Status VisitArray(const Work& w, const ArrayInfo& a);
  Status NestedLists(const Work& w, const std::vector<uint64_t>& shape, std::vector<Value*>* leaves,
                     std::vector<std::string>* names);
  static uint64_t FortranIndex(const std::vector<uint64_t>& shape, uint64_t flat);
  Status VisitInstance(const Work& w, const InstanceInfo& inst);
  Status VisitGlobal(const Work& w);
  Status VisitSequence(const Work& w);
  Status VisitDict(const Work& w);
  Result<std::string> RegisterTensor(ObjId id, const std::string& name);
  void AddPending(ObjId id, std::string name);
  Result<Value> ScalarValue(const ArrayInfo& a);
  std::string UniqueName(std::string name);
  Status EmitTensors();
  // Per chunk of the torch side tables (Graph::tensors, Graph::storages):
  // the pending tensors that still read it (EmitTensors frees it after the
  // last).
  struct SideTableUses {
    std::vector<uint32_t> tensors;
    std::vector<uint32_t> storages;
  };
  // A tensor-like object as EmitTensors needs it: what it is and where its
  // side-table entries are, so that the objects can be freed before.
  struct Pending {
    ObjId id;
    RecordKind record;
    uint32_t aux;      // the record's side-table index
    uint32_t link;     // the storage's (or numpy dtype's) side-table index
    std::string name;
  };
  Result<uint32_t> StorageFor(uint32_t storage_aux);
  Tensor NumpyTensor(const Pending& p);
  Status AddTorchTensor(Pending& p);
  bool PureStateDict(Ref root);
  Status RunPureStateDict(Ref root);
  void ReleaseObjects();
  SideTableUses CountSideTableUses() const;
  void DoneWithSideTables(const Pending& p, SideTableUses* uses);
  void TieViews();

  std::shared_ptr<Graph> keep_;
  Graph& g_;
  const ConvertSettings& s_;
  ParseContext& ctx_;
  ParsedModel* out_;
  std::vector<uint8_t> on_path_;
  std::vector<Work> work_;
  uint64_t nodes_ = 0;
  // Tensor-like objects (tensor, storage and numpy array records) in the
  // order they were first reached, with their names.
  std::vector<Pending> tensors_;
  std::unordered_map<ObjId, size_t> tensor_names_;  // -> index into tensors_
  KeyedStringSet used_names_;
  std::set<std::string> noted_user_classes_;
  // Views of a storage already emitted, for tied weights: -> indices into
  // out_->tensors.
  struct ViewKey {
    uint32_t storage;  // side-table index
    DType dtype;
    uint64_t offset;
    std::vector<uint64_t> shape;
    std::vector<int64_t> strides;
    bool operator<(const ViewKey& o) const {
      return std::tie(storage, dtype, offset, shape, strides) <
             std::tie(o.storage, o.dtype, o.offset, o.shape, o.strides);
    }
  };
  std::map<ViewKey, std::vector<size_t>> views_;
  // Per storage (side-table index): how many tensors view it, up to 2. Only
  // a storage viewed twice or more can hold tied views, so only its views
  // go into views_ (a map node and three small vectors per tensor).
  std::vector<uint8_t> views_of_storage_;
  // Per storage (side-table index): its TorchSources slot + 1, or 0.
  std::vector<uint32_t> storage_slots_;
  std::shared_ptr<TorchSources> torch_sources_;  // made by the first torch tensor
  bool big_endian_noted_ = false;
};

}  // namespace safemodel::loader::pickle::internal

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_CONVERTER_H_
