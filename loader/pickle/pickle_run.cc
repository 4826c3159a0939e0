#include "loader/pickle/pickle_run.h"

namespace safemodel::loader::pickle {

Result<Ref> RunWholePickle(Machine& machine, ByteView data, const std::string& where,
                           std::string_view after, ParseContext& ctx) {
  uint64_t end = 0;
  Result<Ref> root = machine.Run(data, 0, &end);
  return SettleWholePickle(root, end, data, where, after, ctx);
}

Result<Ref> SettleWholePickle(const Result<Ref>& root, uint64_t end, ByteView data,
                              const std::string& where, std::string_view after, ParseContext& ctx) {
  if (root.ok() && end != data.size()) {
    // A second pickle (or anything) after STOP: list what it calls, then
    // refuse it as hidden data.
    ScanForFindings(data, end, where, ctx);
    if (ctx.refused()) return ctx.RefusedStatus();
    return Status::Malformed(where + ": " + Num(data.size() - end) + " bytes after " +
                             std::string(after));
  }
  if (ctx.refused()) return RefusedStatus(ctx, root.status(), where);
  return root;
}

void ScanForFindings(ByteView data, uint64_t start, const std::string& where, ParseContext& ctx) {
  uint64_t pos = start;
  for (uint32_t i = 0; i < kMaxScannedStreams && pos < data.size(); ++i) {
    Graph graph;
    MachineOptions opts;
    opts.where = where;
    opts.persistent_load = ScanPersistentLoad();
    Machine machine(ctx, graph, opts);
    uint64_t end = 0;
    Result<Ref> r = machine.Run(data, pos, &end);
    // A semantic error still read the stream to its STOP.
    if (!r.ok() && end == 0) break;
    if (end <= pos) break;
    pos = end;
  }
}

PersistentLoad ScanPersistentLoad() {
  return [](Machine& m, Ref, uint64_t offset) -> Result<Ref> {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref r, m.New(Kind::kOpaque, offset));
    return r;
  };
}

Status RefusedStatus(ParseContext& ctx, const Status& error, const std::string& where) {
  if (!error.ok() && error.code() != StatusCode::kRefused) {
    ctx.Note("pickle.also_unreadable", where,
             "besides what it refers to, the input cannot be read: " + error.ToString());
  }
  return ctx.RefusedStatus();
}

}  // namespace safemodel::loader::pickle
