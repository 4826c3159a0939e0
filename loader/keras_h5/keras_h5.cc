#include "loader/keras_h5/keras_h5.h"

namespace safemodel::loader {

Status PrepareHdf5() { return Status::Ok(); }

namespace {
class KerasH5Parser final : public Parser {
 public:
  Status Parse(ByteView, ParseContext&, ParsedModel*) override {
    return Status::Unsupported("HDF5 (Keras .h5) input is not supported by this build yet");
  }
};
}  // namespace

std::unique_ptr<Parser> NewKerasH5Parser() { return std::make_unique<KerasH5Parser>(); }

}  // namespace safemodel::loader
