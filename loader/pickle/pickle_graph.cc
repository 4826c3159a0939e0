#include "loader/pickle/pickle_graph.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

#include "loader/pickle/pickle_machine.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
// A freed span is poisoned until Copy reuses it: a stale reference's read of
// its items is then ASan's report, not a quiet read of another object's.
#define SAFEMODEL_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define SAFEMODEL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SAFEMODEL_POISON(p, n) (static_cast<void>(p), static_cast<void>(n))
#define SAFEMODEL_UNPOISON(p, n) (static_cast<void>(p), static_cast<void>(n))
#endif

namespace safemodel::loader::pickle {

// Object::items() keeps an item count in 32 bits.
static_assert(kMaxStackDepth < (uint64_t{1} << 32) && kMaxContainerItems < (uint64_t{1} << 32),
              "item counts must fit Object's 32-bit count");

void* AllocateChunk(size_t bytes, bool first) {
  if (kSanitizerBuild || first) return ::operator new(bytes);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}

void FreeChunk(void* chunk, size_t bytes, bool first) {
  if (kSanitizerBuild || first) {
    ::operator delete(chunk);
  } else {
    munmap(chunk, bytes);
  }
}

void KeyIndex::Place(Slot s) {
  size_t i = s.tag & mask_;
  while (slots_[i].pos != kEmpty) i = (i + 1) & mask_;
  slots_[i] = s;
}

void KeyIndex::Add(uint64_t hash, uint32_t pos) {
  if (2 * (count_ + 1) > slots_.size()) {
    // Doubled (16 slots at first): the slots move to their places in the
    // larger table, found again from the tags.
    std::vector<Slot> old(std::max<size_t>(16, 2 * slots_.size()));
    old.swap(slots_);
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.pos != kEmpty) Place(s);
    }
  }
  Place({pos, static_cast<uint32_t>(hash)});
  ++count_;
}

// Objects and items are plain words: a chunk is freed without running
// destructors.
static_assert(std::is_trivially_destructible_v<Object> && std::is_trivially_destructible_v<Ref>);

const Ref* ItemArena::Copy(std::span<const Ref> items) {
  if (items.empty()) return nullptr;
  Ref* out;
  if (items.size() <= kReuseItems && !free_[items.size()].empty()) {
    out = free_[items.size()].back();
    free_[items.size()].pop_back();
    SAFEMODEL_UNPOISON(out, items.size() * sizeof(Ref));
  } else if (kBlockPerSpan || items.size() > kOwnBlockItems) {
    out = static_cast<Ref*>(AllocateChunk(items.size() * sizeof(Ref), blocks_.empty()));
    blocks_.push_back({out, items.size()});
  } else {
    if (items.size() > left_) {
      next_ = static_cast<Ref*>(AllocateChunk(kChunkItems * sizeof(Ref), blocks_.empty()));
      blocks_.push_back({next_, kChunkItems});
      left_ = kChunkItems;
    }
    out = next_;
    next_ += items.size();
    left_ -= items.size();
  }
  std::uninitialized_copy(items.begin(), items.end(), out);
  return out;
}

void ItemArena::Free(const Ref* items, size_t count) {
  if (items == nullptr || count == 0 || count > kReuseItems) return;
  free_[count].push_back(const_cast<Ref*>(items));
  SAFEMODEL_POISON(items, count * sizeof(Ref));
}

void ItemArena::clear() {
  for (size_t n = 0; n <= kReuseItems; ++n) {
    for (Ref* span : free_[n]) SAFEMODEL_UNPOISON(span, n * sizeof(Ref));
    std::vector<Ref*>().swap(free_[n]);
  }
  for (size_t i = 0; i < blocks_.size(); ++i) FreeChunk(blocks_[i].items, blocks_[i].count * sizeof(Ref), i == 0);
  std::vector<Block>().swap(blocks_);
  next_ = nullptr;
  left_ = 0;
}

Object& ObjectStore::emplace_back() {
  if ((size_ & (kChunk - 1)) == 0) {
    chunks_.push_back(static_cast<Object*>(AllocateChunk(kChunk * sizeof(Object), chunks_.empty())));
  }
  Object* o = new (&chunks_.back()[size_ & (kChunk - 1)]) Object();
  ++size_;
  return *o;
}

void ObjectStore::clear() {
  for (size_t i = 0; i < chunks_.size(); ++i) FreeChunk(chunks_[i], kChunk * sizeof(Object), i == 0);
  std::vector<Object*>().swap(chunks_);
  size_ = 0;
}

void Graph::SetItems(ObjId id, std::span<const Ref> items) {
  Object& o = objects[id];
  if (IsByteKind(o.kind)) return;
  if (o.hi_ == Object::kGrown) {
    auto* v = static_cast<std::vector<Ref>*>(const_cast<void*>(o.ptr_));
    v->assign(items.begin(), items.end());
    return;
  }
  o.ptr_ = item_arena.Copy(items);
  o.lo_ = static_cast<uint32_t>(items.size());
}

std::vector<Ref>& Graph::GrowItems(ObjId id) {
  Object& o = objects[id];
  if (IsByteKind(o.kind)) {  // no items: what is added is dropped
    discarded_items.clear();
    return discarded_items;
  }
  if (o.hi_ == Object::kGrown) {
    return *static_cast<std::vector<Ref>*>(const_cast<void*>(o.ptr_));
  }
  const std::span<const Ref> now = o.items();
  std::vector<Ref>& v = grown.emplace_back(now.begin(), now.end());
  o.ptr_ = &v;
  o.lo_ = 0;
  o.hi_ = Object::kGrown;
  return v;
}

const char* TextArena::Copy(std::string_view text) {
  if (text.size() > kChunkBytes) {
    char* own = own_.emplace_back(std::make_unique_for_overwrite<char[]>(text.size())).get();
    std::memcpy(own, text.data(), text.size());
    return own;
  }
  if (chunks_.empty() || text.size() > kChunkBytes - used_) {
    chunks_.push_back(std::make_unique_for_overwrite<char[]>(kChunkBytes));
    used_ = 0;
  }
  char* at = chunks_.back().get() + used_;
  if (!text.empty()) std::memcpy(at, text.data(), text.size());
  used_ += text.size();
  return at;
}

bool Graph::Releasable(ObjId id) const {
  const Object& o = objects[id];
  if (o.shared) return false;
  if (o.kind == Kind::kTuple) return o.hi_ != Object::kGrown && o.lo_ > 0;
  if (o.kind == Kind::kDict) {
    return o.items().empty() && o.side == UINT32_MAX &&
           attrs.find(id) == attrs.end();
  }
  // Its StorageInfo is what the tensors read (TensorInfo::storage_index).
  return o.kind == Kind::kRecord && o.record == RecordKind::kStorage;
}

void Graph::Release(ObjId id) {
  Object& o = objects[id];
  // A storage (Releasable): a later persistent id of its key makes a new
  // record for the same StorageInfo.
  if (o.kind == Kind::kRecord && o.record == RecordKind::kStorage && o.aux < storages.size()) {
    storages[o.aux].object = kNoObj;
  }
  if (IsByteKind(o.kind)) {
    // Nothing of its own: the bytes are the stream's or Graph::owned's.
  } else if (o.hi_ == Object::kGrown) {
    std::vector<Ref>().swap(*static_cast<std::vector<Ref>*>(const_cast<void*>(o.ptr_)));
  } else {
    item_arena.Free(static_cast<const Ref*>(o.ptr_), o.lo_);
  }
  o = Object();
  free_ids.push_back(id);
}

std::string KindName(const Graph& graph, Ref r) {
  switch (r.kind) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "a bool";
    case Kind::kInt:
      return "an int";
    case Kind::kFloat:
      return "a float";
    case Kind::kBigInt:
      return "an int";
    case Kind::kStr:
      return "a str";
    case Kind::kBytes:
      return "bytes";
    case Kind::kByteArray:
      return "a bytearray";
    case Kind::kTuple:
      return "a tuple";
    case Kind::kList:
      return "a list";
    case Kind::kDict:
      return graph.at(r).ordered ? "an OrderedDict" : "a dict";
    case Kind::kSet:
      return "a set";
    case Kind::kFrozenSet:
      return "a frozenset";
    case Kind::kGlobal:
      return "the name " + graph.name(r);
    case Kind::kOpaque:
      return "the result of a refused call";
    case Kind::kRecord:
      switch (graph.at(r).record) {
        case RecordKind::kTensor:
          return "a tensor";
        case RecordKind::kStorage:
          return "a storage";
        case RecordKind::kNdArray:
          return "a numpy array";
        case RecordKind::kNpDtype:
          return "a numpy dtype";
        case RecordKind::kNpScalar:
          return "a numpy scalar";
        case RecordKind::kInstance:
          return "an instance";
        case RecordKind::kComplex:
          return "a complex";
        case RecordKind::kDevice:
          return "a torch.device";
        case RecordKind::kLayout:
          return "a torch layout";
        case RecordKind::kJoblibArray:
          return "a joblib NumpyArrayWrapper";
      }
  }
  return "a value";
}

Result<int64_t> AsInt(const Graph& graph, Ref r, std::string_view what) {
  if (r.kind == Kind::kInt || r.kind == Kind::kBool) return r.i;
  return Status::Malformed(std::string(what) + " must be an int, not " + KindName(graph, r));
}

Result<std::string_view> AsStr(const Graph& graph, Ref r, std::string_view what) {
  if (r.kind == Kind::kStr) return graph.text(r);
  return Status::Malformed(std::string(what) + " must be a str, not " + KindName(graph, r));
}

}  // namespace safemodel::loader::pickle
