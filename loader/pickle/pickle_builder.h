// The object-building half of one Machine::Run(): allocating heap objects
// and records, the opaque placeholder for what a refused call would have
// made, the first "semantic" error, work accounting, and the location of the
// opcode being run for messages. The opcode loop (pickle_machine.cc) derives
// from it and advances the stream; the key operations (pickle_keys.h) and
// the handlers (pickle_handlers.h) build only through it, never touching the
// stream. Internal to loader/pickle.
//
// Worst case: O(1) per call except CopyItems (O(items), charged as work).
//
// Trust: everything it builds comes from an untrusted stream; allocation is
// bounded by kMaxObjects and kMaxContainerItems.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_BUILDER_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_BUILDER_H_

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "loader/pickle/pickle_machine.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader::pickle {

class Builder {
 public:
  Builder(Machine& m, uint64_t start) : m_(m), g_(m.graph()), pos_(start), start_(start) {}

  Graph& graph() { return g_; }
  Machine& machine() { return m_; }
  const MachineOptions& options() const { return m_.options(); }

  // ---- Where -----------------------------------------------------------------
  // The offset of the opcode being run, in the stream.
  uint64_t op_offset() const { return op_offset_; }
  // " at <where> byte N" for the opcode being run.
  std::string At() const { return " at " + m_.Location(op_offset_); }
  // "N", the opcode's byte offset in its file, for findings.
  std::string OpByte() const { return Num(m_.options().base + op_offset_); }
  // A stream error at the opcode: "<where>: <msg> at <where> byte N".
  Status Bad(std::string msg) const {
    return Status::Malformed(m_.options().where + ": " + msg + At());
  }
  // `s` with the same location: its code kept, "<where>: <message> at ...".
  Status Located(const Status& s) const {
    return Status(s.code(), m_.options().where + ": " + s.message() + At());
  }
  // A finding at the opcode being run.
  void Refuse(std::string rule, std::string message, std::vector<std::string> references = {}) {
    m_.Refuse(std::move(rule), op_offset_, std::move(message), std::move(references));
  }

  // ---- Objects ---------------------------------------------------------------
  Result<Ref> New(Kind kind) { return m_.New(kind, op_offset_); }
  Result<Ref> NewData(Kind kind, ByteView data) {
    if (data.size() > Object::kMaxDataBytes) {
      return Status::LimitExceeded("a pickled string or bytes object of " + Num(data.size()) +
                                   " bytes (the limit is " + Num(Object::kMaxDataBytes) + ")" +
                                   At());
    }
    SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(kind));
    g_.at(r).set_data(data);
    return r;
  }
  // Bytes the machine decoded: kept in the graph (they never move).
  Result<Ref> NewOwned(Kind kind, std::string bytes) {
    g_.owned.push_back(std::move(bytes));
    return NewData(kind, AsBytes(g_.owned.back()));
  }
  // A container holding a copy of `items` (Graph::SetItems).
  Result<Ref> NewContainer(Kind kind, std::span<const Ref> items) {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(kind));
    g_.SetItems(r.id, items);
    return r;
  }
  Result<Ref> NewRecord(RecordKind record) {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(Kind::kRecord));
    g_.at(r).record = record;
    return r;
  }
  // A record whose data is `info`, appended to the graph's side table
  // `table` (tensors, arrays, dtypes, instances), which Object::aux indexes.
  template <typename Table, typename Info>
  Result<Ref> NewRecordWith(RecordKind record, Table& table, Info info) {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewRecord(record));
    g_.at(r).aux = static_cast<uint32_t>(table.size());
    table.push_back(std::move(info));
    return r;
  }
  // The one opaque value of this run: what anything derived from a refused
  // name or a semantic error becomes. It carries nothing.
  Result<Ref> Opaque() {
    if (opaque_.kind != Kind::kOpaque) {
      SAFEMODEL_ASSIGN_OR_RETURN(opaque_, New(Kind::kOpaque));
    }
    return opaque_;
  }
  bool IsOpaque(Ref r) const { return r.kind == Kind::kOpaque; }

  // ---- Semantic errors ---------------------------------------------------------
  // A handler's error: remembered (the first one is returned at the end) and
  // replaced by an opaque value so that reading goes on.
  Result<Ref> Semantic(const Status& s) {
    Remember(s);
    return Opaque();
  }
  void Remember(const Status& s) {
    if (semantic_.ok()) semantic_ = s;
  }
  const Status& semantic() const { return semantic_; }

  // ---- Work ------------------------------------------------------------------
  // Bytes of the stream read so far.
  uint64_t bytes_read() const { return pos_ - start_; }
  // Charges work that could grow faster than the input (hash operations,
  // key comparisons, copies of containers) to the file's budget.
  Status Spend(uint64_t units) {
    return m_.context().Spend(units, kWorkPerByte * bytes_read(), m_.options().where);
  }
  // The items of a container, copied (the caller may allocate, which moves
  // objects); the copy is charged as work.
  Result<std::vector<Ref>> CopyItems(Ref r) {
    const std::span<const Ref> items = g_.items(r);
    SAFEMODEL_RETURN_IF_ERROR(Spend(items.size()));
    return std::vector<Ref>(items.begin(), items.end());
  }
  // A container about to hold `size` items.
  Status CheckGrowth(uint64_t size, const char* what) const {
    if (size <= kMaxContainerItems) return Status::Ok();
    return Status::LimitExceeded(m_.options().where + ": a " + what + " of more than " +
                                 Num(kMaxContainerItems) + " items" + At());
  }

  // ---- Names from the user's script --------------------------------------------
  // Names in the user's module (IsUserModule): recorded, refused unless they
  // are only instantiated as classes (checked at STOP).
  void AddUserGlobal(ObjId id) { user_globals_.push_back(id); }
  bool IsUserGlobal(ObjId id) const {
    return std::find(user_globals_.begin(), user_globals_.end(), id) != user_globals_.end();
  }
  const std::vector<ObjId>& user_globals() const { return user_globals_; }

 protected:
  Machine& m_;
  Graph& g_;
  // How far the stream has been read (the opcode loop advances it).
  uint64_t pos_;
  uint64_t start_;
  uint64_t op_offset_ = 0;

 private:
  Status semantic_;
  Ref opaque_;
  std::vector<ObjId> user_globals_;
};

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_BUILDER_H_
