#include "loader/keras3/h5_store.h"

#include <memory>
#include <vector>

#include "loader/keras_h5/h5_file.h"

namespace safemodel::loader::keras3 {

Result<WeightStore> OpenH5Store(ByteView image, std::string_view where, ParseContext& ctx) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::shared_ptr<h5::File> file, h5::File::Open(image, ctx));
  WeightStore store;
  store.format = "h5";
  store.keepalive.push_back(file);
  if (ctx.refused()) return store;  // the caller stops on the refusals
  const uint64_t limit = ctx.options().memory_limit;
  const auto& nodes = file->nodes();
  std::vector<bool> in_vars(nodes.size(), false);
  for (const h5::Node& parent : nodes) {
    if (parent.kind != h5::Node::Kind::kGroup) continue;
    const h5::Node* vars = file->Child(parent, "vars");
    if (vars == nullptr || vars->kind != h5::Node::Kind::kGroup) continue;
    StoreGroup g;
    g.stored = parent.path == "/" ? std::string() : parent.path.substr(1);
    g.path = LogicalPath(g.stored);
    for (const auto& [link, index] : vars->children) {
      const h5::Node& child = nodes[index];
      StoreVar v;
      v.key = link;
      v.tensor_name = child.path.substr(1);
      v.is_dataset = child.kind == h5::Node::Kind::kDataset;
      if (v.is_dataset) {
        in_vars[index] = true;
        const h5::Node* node = &child;
        v.make = [file, node, limit](std::string n) { return file->MakeTensor(*node, std::move(n), limit); };
        if (child.dataset.widen_bf16) ++store.widened_bf16;
        else if (child.dataset.swap_unit > 1) ++store.big_endian;
      }
      g.vars.push_back(std::move(v));
    }
    store.groups.push_back(std::move(g));
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].kind == h5::Node::Kind::kDataset && !in_vars[i]) store.stray.push_back(nodes[i].path.substr(1));
  }
  SAFEMODEL_RETURN_IF_ERROR(FinishStore(&store, where));
  return store;
}

}  // namespace safemodel::loader::keras3
