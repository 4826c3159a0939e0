#include "safemodel/export_safetensors.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "converter/output_file.h"
#include "safemodel/reader.h"
#include "safemodel/safetensors.h"

namespace safemodel {

namespace {

Status WriteFully(int fd, std::span<const std::byte> bytes) {
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Status::IoError(std::string("writing the safetensors output: ") +
                             (n < 0 ? std::strerror(errno) : "no progress"));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Result<ExportSummary> ExportSafetensorsFile(const std::string& model_path,
                                            const std::string& out_path,
                                            const ExportOptions& options) {
  SAFEMODEL_ASSIGN_OR_RETURN(Model model, Model::Open(model_path));
  // Planned before the output exists: an inexpressible dtype leaves nothing.
  SAFEMODEL_ASSIGN_OR_RETURN(SafetensorsPlan plan, PlanSafetensors(model));
  struct stat input {};
  if (::stat(model_path.c_str(), &input) != 0) {
    return Status::IoError("cannot stat '" + model_path + "': " + std::strerror(errno));
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::unique_ptr<OutputFile> out,
                             OutputFile::OpenPath(out_path, options.force, input));
  const uint64_t size = plan.header.size() + plan.buffer_bytes;
  SAFEMODEL_RETURN_IF_ERROR(ReserveOutputSpace(out->fd(), size, 0));
  // ReserveOutputSpace may have extended the file; write from the start.
  if (::lseek(out->fd(), 0, SEEK_SET) != 0) {
    return Status::IoError(std::string("seeking the safetensors output: ") + std::strerror(errno));
  }
  uint64_t written = 0;
  SAFEMODEL_RETURN_IF_ERROR(WriteSafetensors(model, [&](std::span<const std::byte> bytes) {
    written += bytes.size();
    return WriteFully(out->fd(), bytes);
  }));
  if (written != size) {
    return Status::Internal("safetensors export wrote " + std::to_string(written) +
                            " bytes, planned " + std::to_string(size));
  }
  SAFEMODEL_RETURN_IF_ERROR(out->Commit(size, options.sync));
  return ExportSummary{plan.order.size(), plan.aliases, size};
}

}  // namespace safemodel
