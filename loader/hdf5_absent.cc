// The lean seam (hdf5_seam.h): no libhdf5 in the program. Linked into
// safemodel_loader_lean only.
#include <atomic>

#include "loader/hdf5_seam.h"

namespace safemodel::loader {

namespace {

// Set once and never cleared: a worker converts one input per process, and
// a parse that asked for libhdf5 anywhere (even in a reading whose status
// was folded into another's) is void as a whole.
std::atomic<bool> g_needed{false};

class NeedsHdf5Parser final : public Parser {
 public:
  Status Parse(ByteView, ParseContext&, ParsedModel*) override {
    g_needed = true;
    return Status::Unsupported(
        "this input needs libhdf5, which this worker does not link: safemodel-worker-hdf5 "
        "reads it");
  }
};

Status Prepare() { return Status::Ok(); }
std::unique_ptr<Parser> NewParser() { return std::make_unique<NeedsHdf5Parser>(); }
bool Needed() { return g_needed; }

constexpr Hdf5Seam kAbsent = {false, Prepare, NewParser, Needed};

}  // namespace

const Hdf5Seam& LinkedHdf5Seam() { return kAbsent; }

}  // namespace safemodel::loader
