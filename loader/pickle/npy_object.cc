#include "loader/pickle/npy_object.h"

#include <memory>
#include <string>

#include "loader/pickle/pickle_convert.h"
#include "loader/pickle/pickle_run.h"

namespace safemodel::loader::pickle {

Status ParseNpyObjectArray(const NpyHeader& header, ByteView data, std::string_view where_view,
                           std::string_view tensor_name, ParseContext& ctx, ParsedModel* out) {
  const std::string where(where_view);
  auto graph = std::make_shared<Graph>();
  MachineOptions opts;
  opts.where = where;
  opts.base = header.data_offset;
  Machine machine(ctx, *graph, opts);
  SAFEMODEL_ASSIGN_OR_RETURN(
      const Ref root, RunWholePickle(machine, data, where, "the object array's pickle", ctx));
  const Graph& g = *graph;
  if (root.kind != Kind::kRecord || g.at(root).record != RecordKind::kNdArray) {
    return Status::Malformed(where + ": the object array's pickle holds " + KindName(g, root) +
                             ", not an array");
  }
  const ArrayInfo& a = g.arrays[g.at(root).aux];
  if (!a.built || a.items.kind != Kind::kList || a.shape != header.shape ||
      (a.fortran && a.shape.size() > 1) != (header.fortran_order && header.shape.size() > 1)) {
    return Status::Malformed(where +
                             ": the pickled array does not match the header's object dtype, shape "
                             "and order");
  }
  ConvertSettings settings;
  settings.where = where;
  settings.root_name = std::string(tensor_name);
  settings.prefix = std::string(tensor_name);
  SAFEMODEL_ASSIGN_OR_RETURN(Converted c, ConvertGraph(graph, root, settings, ctx, out));
  if (!out->metadata.is_map()) out->metadata = Value::Map();
  out->metadata.Set(std::string(tensor_name),
                    c.metadata.is_null() ? Value::List() : std::move(c.metadata));
  ctx.Note("numpy.object_array", where,
           "object array read by the pickle machine (no code); its elements are in the metadata "
           "under '" +
               Printable(tensor_name) + "'");
  return Status::Ok();
}

}  // namespace safemodel::loader::pickle
