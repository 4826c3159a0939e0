// The lean seam (hdf5_seam.h): no libhdf5 in the program. Linked into
// safemodel_loader_lean only.
#include <atomic>
#include <string_view>

#include "loader/hdf5_seam.h"

namespace safemodel::loader {

namespace {

// Set once and never cleared: a worker converts one input per process, and
// a parse that asked for libhdf5 anywhere (even in a reading whose status
// was folded into another's) is void as a whole.
std::atomic<bool> g_needed{false};

Status NeedsHdf5() {
  g_needed = true;
  return Status::Unsupported(
      "this input needs libhdf5, which this worker does not link: safemodel-worker-hdf5 "
      "reads it");
}

class NeedsHdf5Parser final : public Parser {
 public:
  Status Parse(ByteView, ParseContext&, ParsedModel*) override { return NeedsHdf5(); }
};

Status Prepare() { return Status::Ok(); }
std::unique_ptr<Parser> NewParser() { return std::make_unique<NeedsHdf5Parser>(); }
Result<keras3::WeightStore> OpenH5Store(ByteView, std::string_view, ParseContext&) {
  return NeedsHdf5();
}
bool Needed() { return g_needed; }

constexpr Hdf5Seam kAbsent = {false, Prepare, NewParser, OpenH5Store, Needed};

}  // namespace

const Hdf5Seam& LinkedHdf5Seam() { return kAbsent; }

}  // namespace safemodel::loader
