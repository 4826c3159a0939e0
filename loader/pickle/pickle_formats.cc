#include "loader/pickle/pickle_formats.h"

namespace safemodel::loader {

bool LooksLikePickle(ByteView input) {
  return input.size() >= 2 && input[0] == 0x80 && input[1] >= 2 && input[1] <= 5;
}

namespace {
class PickleParser final : public Parser {
 public:
  Status Parse(ByteView, ParseContext&, ParsedModel*) override {
    return Status::Unsupported("pickle input (PyTorch, joblib) is not supported by this build yet");
  }
};
}  // namespace

std::unique_ptr<Parser> NewPickleParser() { return std::make_unique<PickleParser>(); }

bool LooksLikeTorchZip(const ZipArchive&) { return false; }

Status ParseTorchZipArchive(std::shared_ptr<ZipArchive>, ParseContext&, ParsedModel*) {
  return Status::Unsupported("PyTorch zip checkpoints are not supported by this build yet");
}

Status ParseNpyObjectArray(const NpyHeader& header, ByteView, std::string_view where,
                           std::string_view, ParseContext& ctx, ParsedModel*) {
  ctx.Refuse("numpy.object_array", std::string(where),
             "object dtype ('" + Printable(header.descr) +
                 "'): the data is a pickle, which runs code when numpy loads it");
  return ctx.RefusedStatus();
}

}  // namespace safemodel::loader
