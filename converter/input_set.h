// The conversion's input as the parent opens it: one file (input_file.h), or
// the files of a model made of several (a TensorFlow SavedModel directory, a
// TF checkpoint given as its directory, `.index` or prefix, a sharded Keras
// `*.weights.json`), chosen by the rule of loader/files/model_files.h.
//
// For a model made of several files the parent does everything that touches
// the file system: it lists the directory (never through a symbolic link:
// every directory and file is opened component by component with
// O_NOFOLLOW), refuses a link, a special file or an unknown name anywhere
// under a directory input before it opens anything, opens each file of the
// model as input_file.h opens a single input, and hands the descriptors to
// the worker together with their list (worker::InputManifest). The worker
// opens nothing.
//
// Errors are those of InputFile::Open and loader::PlanDirectory/PlanFile,
// plus kLimitExceeded when the files exceed the descriptors the process may
// open (`ulimit -n`) or the directory nests deeper than
// loader::kMaxListedDepth.
#ifndef SAFEMODEL_CONVERTER_INPUT_SET_H_
#define SAFEMODEL_CONVERTER_INPUT_SET_H_

#include <string>
#include <vector>

#include "converter/input_file.h"
#include "loader/files/model_files.h"
#include "safemodel/finding.h"
#include "safemodel/status.h"

namespace safemodel {

class InputSet {
 public:
  struct File {
    loader::FileRole role;
    std::string name;  // relative to the directory that was listed
    InputFile file;
  };

  // Opens `path`: a single file as InputFile::Open does, or every file of
  // the multi-file model it names.
  static Result<InputSet> Open(const std::string& path);
  // A single file given as an open descriptor (InputFile::FromDescriptor).
  static Result<InputSet> FromDescriptor(int fd, const std::string& display);

  bool multi_file() const { return !files_.empty(); }
  // The single input, or the first file of the model (for OUT's rules).
  const InputFile& primary() const { return multi_file() ? files_[0].file : single_; }
  // The single input's size, or the sum of the files' sizes.
  uint64_t total_size() const;
  // Descriptor and size of every file, in the order the worker gets them.
  std::vector<std::pair<int, uint64_t>> Parts() const;

  // kIoError if any file changed since Open (InputFile::CheckUnchanged).
  Status CheckUnchanged() const;
  // kInvalidArgument if OUT, when it exists, is one of the model's files.
  Status CheckNotOutput(const std::string& out_path) const;

  // A note (rule input.files) naming the files that were read, with their
  // sizes: the report and the output say what the conversion covers. Only
  // for a multi-file input.
  Finding FilesNote() const;

  // The list the worker gets on its input descriptor, serialized
  // (worker::InputManifest). Only for a multi-file input.
  std::string Manifest() const;

  // The input's SHA-256 from each part's SHA-256 (in the order of Parts()):
  // a single file's own; for several files, the SHA-256 of the listing
  // `sha256sum` prints for them in bytewise name order
  // ("<hex>  <name>\n" per file), so that it can be reproduced with
  // `cd DIR && sha256sum FILE... | sha256sum`.
  std::string CombineDigests(const std::vector<std::string>& digests) const;

 private:
  InputFile single_;
  loader::ModelKind kind_ = loader::ModelKind::kCheckpoint;
  std::vector<File> files_;
  std::vector<std::string> listed_;
};

// A sealed anonymous file holding `bytes`, for the worker's input descriptor
// (memfd_create); the caller owns the descriptor. kIoError on failure.
Result<int> SealedMemoryFile(const std::string& bytes);

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_INPUT_SET_H_
