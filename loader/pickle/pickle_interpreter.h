// The interpreter for one Machine::Run(): the opcode loop over the stream,
// with its stack, marks, memo and frames. It is the only code that reads
// the stream; what an opcode builds goes through the Builder it derives
// from, and what a name does when called through the handlers
// (pickle_handlers.h). Internal to loader/pickle.
//
// pickle_machine.cc holds the loop, framing, constants and the memo;
// pickle_ops.cc the strings, containers, names and calls, and the joblib
// array data that follows a NumpyArrayWrapper's BUILD.
//
// Worst case and trust: see pickle_machine.h.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_INTERPRETER_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_INTERPRETER_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loader/pickle/pickle_builder.h"
#include "proto/base/keyed_hash.h"

namespace safemodel::loader::pickle {

// The memo. Picklers number entries 0, 1, 2, ...: those keys live in a
// vector (no hashing, good locality; 2x faster on memo-heavy pickles than a
// hash map), held in fixed chunks (DenseSlots). Any other key goes to a keyed
// hash map. A key joins the vector only while it is below twice the entry
// count plus kDenseSlack, so one large key cannot make the vector large; each
// key lives in exactly one of the two.
// A vector slot is 4 bytes, not a 16-byte Ref (torch.save memoizes ~8
// objects per tensor: 3.2 MB for 100,000 tensors, not 6.4): a heap object's
// kind and id (an id has kObjIdBits: kMaxObjects bounds them), a storage's
// index standing for its key str (KeepAsStorageKey), or the position of an
// inline value (None, bool, int, float: rarely memoized) in inline_, or 0
// for a key not stored.
class Memo {
 public:
  // The value stored under `key`, if any; none for a key Release voided
  // (Released says which) and for one holding a storage's key text
  // (StorageKeyAt says which).
  std::optional<Ref> Find(uint64_t key) const {
    if (key < dense_.size() && dense_[key] != 0) {
      if (dense_[key] == kReleased || IsStorageKeySlot(dense_[key])) return std::nullopt;
      return Unpack(dense_[key]);
    }
    auto it = sparse_.find(key);
    if (it == sparse_.end()) return std::nullopt;
    return it->second;
  }
  // Stores or replaces; false if a new key would exceed kMaxMemoEntries.
  bool Put(uint64_t key, Ref r);
  // Voids `key` if it holds heap object `id` (about to be released): a later
  // Find must not return the id, which a new object may take. Only keys in
  // the vector are voided; the caller never releases an object stored
  // under any other key (Interpreter::NoteMemoized).
  void Release(uint64_t key, ObjId id) {
    if (key >= dense_.size()) return;
    uint32_t& slot = dense_[key];
    if (slot == HeapSlot(Kind::kTuple, id) || slot == HeapSlot(Kind::kDict, id)) slot = kReleased;
  }
  // Stores, under `key`, storage `storage`'s key text in place of the str
  // object `id` that holds it (a GET then makes a new str of that text,
  // StorageKeyAt), if `key` is in the vector and holds that object and the
  // index fits a slot: then true, and the caller may release the object.
  bool KeepAsStorageKey(uint64_t key, ObjId id, uint32_t storage) {
    if (key >= dense_.size() || dense_[key] != HeapSlot(Kind::kStr, id) ||
        storage >= (uint32_t{1} << kObjIdBits)) {
      return false;
    }
    dense_[key] = kHeapSlot | (kStorageKeyKind << kObjIdBits) | storage;
    return true;
  }
  // The storage whose key text `key` holds (KeepAsStorageKey), if any.
  std::optional<uint32_t> StorageKeyAt(uint64_t key) const {
    if (key >= dense_.size() || !IsStorageKeySlot(dense_[key])) return std::nullopt;
    return dense_[key] & ((uint32_t{1} << kObjIdBits) - 1);
  }
  // Whether `key` was voided by Release (and not stored again since).
  bool Released(uint64_t key) const { return key < dense_.size() && dense_[key] == kReleased; }
  // Whether `key` is one the vector holds (so Release can void it).
  bool Dense(uint64_t key) const { return key < dense_.size() && dense_[key] != 0; }
  uint64_t size() const { return count_; }
  // Places for inline values (at most the vector slots that held one at
  // once; for tests).
  size_t inline_values() const { return inline_.size(); }

 private:
  static constexpr uint64_t kDenseSlack = 1024;
  // The vector's slots, in chunks of kChunkSlots that never move: grown by
  // doubling, the 800,000 keys of a torch.save of 100,000 tensors took up to
  // twice the slots they need, and 1.5 times that while the last doubling
  // copied them (9.6 MB at the end of the pickle run, the worker's peak).
  // Small chunks: every pickle run that memoizes anything zeroes one (an
  // .npz of object arrays runs one per member, a scan of embedded pickles
  // many).
  class DenseSlots {
   public:
    static constexpr unsigned kChunkBits = 10;  // 1,024 slots (4 KiB) a chunk
    static constexpr uint64_t kChunkSlots = uint64_t{1} << kChunkBits;
    uint64_t size() const { return chunks_.size() * kChunkSlots; }
    uint32_t& operator[](uint64_t i) { return chunks_[i >> kChunkBits][i & (kChunkSlots - 1)]; }
    uint32_t operator[](uint64_t i) const { return chunks_[i >> kChunkBits][i & (kChunkSlots - 1)]; }
    // Adds zeroed chunks until slot `i` exists.
    void Cover(uint64_t i) {
      while (size() <= i) chunks_.push_back(std::make_unique<uint32_t[]>(kChunkSlots));
    }

   private:
    std::vector<std::unique_ptr<uint32_t[]>> chunks_;
  };
  // A slot holding a heap object: the flag (bit 31), the kind (bits 23-30),
  // the id (bits 0-22).
  static constexpr unsigned kObjIdBits = 23;
  static_assert(kMaxObjects <= (uint64_t{1} << kObjIdBits), "an object id must fit a memo slot");
  static constexpr uint32_t kHeapSlot = uint32_t{1} << 31;
  static_assert(kMaxMemoEntries < kHeapSlot, "an inline value's position must fit a memo slot");
  static uint32_t HeapSlot(Kind kind, ObjId id) {
    return kHeapSlot | (uint32_t{static_cast<uint8_t>(kind)} << kObjIdBits) | id;
  }
  // A voided key: a heap slot of kind 0xFF, which no Kind has; Put replaces
  // it as any heap value.
  static constexpr uint32_t kReleased = UINT32_MAX;
  // A storage's key text (KeepAsStorageKey): a heap slot of kind 0xFE,
  // which no Kind has either, holding the storage's index.
  static constexpr uint32_t kStorageKeyKind = 0xFE;
  static bool IsStorageKeySlot(uint32_t slot) {
    return slot != kReleased && (slot & kHeapSlot) && ((slot >> kObjIdBits) & 0xFF) == kStorageKeyKind;
  }
  Ref Unpack(uint32_t slot) const {
    if (slot & kHeapSlot) {
      return Ref::Heap(static_cast<Kind>((slot >> kObjIdBits) & 0xFF),
                       static_cast<ObjId>(slot & ((uint32_t{1} << kObjIdBits) - 1)));
    }
    return inline_[slot - 1];
  }
  // Stores `r` in vector slot `key`, reusing the slot's inline value.
  void SetSlot(uint64_t key, Ref r);

  DenseSlots dense_;
  // The keys the vector admits without the growth rule: below this, as the
  // doubling vector's size was (dense_ holds at least as many slots, in
  // whole chunks). Admission must not depend on the chunk size: a key in
  // the vector may be voided (Release), one in the map never is.
  uint64_t dense_limit_ = 0;
  std::vector<Ref> inline_;
  std::vector<uint32_t> free_inline_;  // slots of inline_ no key holds
  KeyedIntMap<uint64_t, Ref> sparse_;
  uint64_t count_ = 0;
};

class Interpreter : public Builder {
 public:
  Interpreter(Machine& m, ByteView data, uint64_t start)
      : Builder(m, start), data_(data), behind_(start) {}

  // Reads one pickle up to and including its STOP (see Machine::Run).
  Result<Ref> Run(uint64_t* end);

 private:
  // The state of one pickle: the outer stream, or a nested one.
  struct Context {
    std::vector<Ref> stack;
    std::vector<size_t> marks;
    Memo memo;
    uint8_t proto = 0;
    // A nested pickle (a joblib object array): the outer wrapper it feeds.
    ObjId wrapper = kNoObj;
  };
  // The fields of a joblib NumpyArrayWrapper's state that matter.
  struct WrapperFields {
    std::optional<Ref> subclass, shape, order, dtype, align, allow_mmap;
  };

  // ---- Reading (pickle_machine.cc) ----------------------------------------------
  Status Truncated(uint64_t need, const char* what) const;
  Result<ByteView> Take(uint64_t n, const char* what) {
    if (n > limit_ - pos_) return Truncated(n, what);
    ByteView v = data_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  // An n-byte little-endian unsigned argument.
  Result<uint64_t> ReadUInt(uint64_t n, const char* what) {
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(n, what));
    uint64_t v = 0;
    for (uint64_t i = n; i-- > 0;) v = (v << 8) | b[i];
    return v;
  }
  // A newline-terminated argument, without the newline.
  Result<std::string_view> ReadLine(const char* what);

  // ---- Stack (pickle_machine.cc) ------------------------------------------------
  Context& C() { return contexts_.back(); }
  size_t Fence() { return C().marks.empty() ? 0 : C().marks.back(); }
  Status Push(Ref r);
  Result<Ref> Pop(const char* what);
  Result<Ref*> Top(const char* what);
  Result<std::vector<Ref>> PopMark(const char* what);

  // ---- Integers (pickle_machine.cc) ---------------------------------------------
  Result<Ref> MakeInt(ByteView le);
  Result<Ref> ParseDecimal(std::string_view s, const char* what);
  // GET/PUT's decimal memo key.
  Result<uint64_t> DecimalKey(const char* what);

  // ---- Opcode families ----------------------------------------------------------
  // One opcode (already read); *stop is set at STOP, whose value is returned.
  Result<Ref> Step(uint8_t op, bool* stop);
  Result<Ref> StepFraming(uint8_t op, bool* stop);  // pickle_machine.cc
  Status StepConstant(uint8_t op);                  // pickle_machine.cc
  Status StepMemo(uint8_t op);                      // pickle_machine.cc
  Status StepString(uint8_t op);                    // pickle_ops.cc
  Status StepContainer(uint8_t op);                 // pickle_ops.cc
  Status StepName(uint8_t op);                      // pickle_ops.cc
  // Checks at the outer STOP, then names the user globals never used.
  Status FinishOuter();

  // ---- Releasing consumed arguments (MachineOptions::release_consumed) ----------
  // After PUT/MEMOIZE of `r` under `key`: a tuple or dict remembers the key
  // (Object::aux) so that a release can void it; memoized a second time, in
  // a nested pickle or under a key the memo's vector does not hold, it is
  // marked shared instead (pickle_machine.cc).
  void NoteMemoized(uint64_t key, Ref r);
  // A GET's str of up to kCopyOnGetBytes whose bytes lie in the stream: its
  // bytes move into Graph::owned, within kMaxCopyOnGetTotal
  // (MachineOptions::read_behind).
  void CopyOutOfStream(Ref r);
  // After BINPERSID of `pid` loaded `loaded`: releases the id's tuple and,
  // when `loaded` is a storage record, the key str in it that only the memo
  // still holds, whose memo key then holds the storage's key text instead
  // (Memo::KeepAsStorageKey; pickle_ops.cc).
  void ReleasePersistentId(Ref pid, Ref loaded);
  // After REDUCE of `callable` on `args` built `result`: releases the
  // arguments of a tensor rebuild (pickle_ops.cc).
  void ReleaseArguments(Ref callable, Ref args, Ref result);
  // Releases `r` if Graph::Releasable, voiding its memo key first.
  void ReleaseOne(Ref r);

  // ---- Opcodes with more to them (pickle_ops.cc) -----------------------------------
  Status OpString();
  Status OpUnicode();
  Status OpReadOnlyBuffer();
  Status OpGlobalOrInst(uint8_t op);
  Status OpStackGlobal();
  Status OpObj();
  Status OpNewObj(uint8_t op);
  Status OpBuild();
  Status OpPersId();
  Status OpBinPersId();
  Status OpExt(uint8_t op);
  // A name read by GLOBAL, INST or STACK_GLOBAL: its table entry, or a
  // finding.
  Result<Ref> MakeGlobal(std::string_view module, std::string_view name, uint8_t op);
  // INST/OBJ: with no arguments an instantiation, else a call.
  Result<Ref> Instantiate(Ref cls, std::vector<Ref> args, uint8_t op);
  // APPEND(S), SETITEM(S), ADDITEMS on their target.
  Status ContainerOp(uint8_t op, Ref target, const std::vector<Ref>& items);

  // ---- joblib (pickle_ops.cc) -------------------------------------------------------
  Status BuildJoblibWrapper(Ref* target, Ref state);
  Status BuildPlainWrapper(uint32_t aux, const std::string& cls, Ref state);
  WrapperFields ReadWrapperFields(Ref state);
  Status ReadWrapperData(const WrapperFields& f, Ref* target);
  Status FinishNested(Ref result);

  ByteView data_;
  uint64_t behind_;  // where the bytes not yet given to read_behind start
  uint64_t limit_ = 0;
  bool in_frame_ = false;
  uint64_t frame_end_ = 0;
  std::vector<Context> contexts_;
  bool noted_mmap_ = false;
  uint64_t copied_on_get_ = 0;  // bytes CopyOutOfStream copied (kMaxCopyOnGetTotal)
  Ref empty_tuple_;  // every EMPTY_TUPLE of this run, once made
};

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_INTERPRETER_H_
