// One parser per input format, behind this interface. A parser runs only
// inside the sandboxed worker and never executes, unmarshals, imports,
// dlopens or opens anything: it reads bytes and describes what they contain.
//
// Trust: every parser's input is untrusted (Parser::Parse); ParseContext
// bounds the work a file may cause beyond reading it once (kWorkBase +
// kWorkPerByte per byte read).
#ifndef SAFEMODEL_LOADER_PARSER_H_
#define SAFEMODEL_LOADER_PARSER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "loader/files/model_files.h"
#include "loader/model.h"
#include "proto/base/byte_reader.h"
#include "safemodel/finding.h"
#include "safemodel/status.h"

namespace safemodel::loader {

struct ParseOptions {
  // Bytes the parser may allocate for tensor data at once (decompressed
  // members, HDF5 reads). A tensor that needs more is a LimitExceeded error.
  uint64_t memory_limit = 4ull << 30;
  // Keras: convert tensors only when the architecture cannot be represented.
  bool weights_only = false;
  // Keras: keep optimizer tensors.
  bool keep_optimizer = false;
  // A read-only private map of a regular file (the worker's input), or
  // empty: a parser reading an image inside it may drop the map's pages from
  // the resident set (MADV_DONTNEED, through a MapResidency): they fault
  // back from the file unchanged. Memory that is not such a map (an inflated
  // member, a test's buffer) is never inside it, so it is never dropped. For
  // walks that touch much of the file (a directory of many small members)
  // or many places of it (each may map a 2 MiB page-cache folio).
  ByteView droppable_map;
};

// Work a parser may spend beyond reading its input once: hash-table
// operations, key comparisons and copies of containers, which a crafted file
// could otherwise make grow faster than its size (a set rebuilt from the same
// million-item list by every three-byte REDUCE). A file gets kWorkBase units
// plus kWorkPerByte for every byte its parsers have read, so the worst case
// stays linear in the bytes read. Real files use well under one unit per byte.
inline constexpr uint64_t kWorkBase = 1ull << 24;
inline constexpr uint64_t kWorkPerByte = 32;

// Collects findings while a parser works. A parser that finds code or a
// reference to code calls Refuse() for each occurrence (so that all of them
// are reported, not just the first) and then returns Status::Refused().
class ParseContext {
 public:
  explicit ParseContext(ParseOptions options) : options_(options) {}
  const ParseOptions& options() const { return options_; }

  void Refuse(std::string rule, std::string location, std::string message,
              std::vector<std::string> references = {});
  void Drop(std::string rule, std::string location, std::string message);
  void Note(std::string rule, std::string location, std::string message);

  bool refused() const { return refusals_ > 0; }
  // The status a parser returns after refusals: names the first and counts.
  Status RefusedStatus() const;
  const std::vector<Finding>& findings() const { return findings_; }

  // Charges `units` of work. `reading` is the allowance of a stream still
  // being read (kWorkPerByte per byte read so far); LimitExceeded, naming
  // `where`, once the file's work exceeds its allowance.
  Status Spend(uint64_t units, uint64_t reading, std::string_view where);
  // A finished stream read `bytes` bytes: they add to the allowance.
  void AddBytesRead(uint64_t bytes);
  uint64_t work_spent() const { return work_; }

 private:
  ParseOptions options_;
  std::vector<Finding> findings_;
  uint64_t refusals_ = 0;
  uint64_t work_ = 0;
  uint64_t allowance_ = kWorkBase;
};

class Parser {
 public:
  virtual ~Parser() = default;
  // Trust: `input` is untrusted. On success fills *out; on a refusal returns
  // kRefused with the findings in `ctx`; any other error refuses the whole
  // file (no partial output).
  virtual Status Parse(ByteView input, ParseContext& ctx, ParsedModel* out) = 0;
};

// One file of a model made of several files (files/model_files.h says which
// files those are), as the worker received it.
struct InputFile {
  FileRole role;
  std::string name;  // relative to the input directory, as the parent listed it
  ByteView bytes;
};

struct InputFiles {
  ModelKind kind = ModelKind::kCheckpoint;
  std::vector<InputFile> files;
  // Entries the parent listed but did not open (assets, fingerprint.pb,
  // anything else beside the model): reported by name.
  std::vector<std::string> listed;
};

// A parser of models made of several files.
class MultiFileParser {
 public:
  virtual ~MultiFileParser() = default;
  // Trust: the bytes and names are untrusted (names come from the file
  // system the input lives on); as Parser::Parse otherwise.
  virtual Status Parse(const InputFiles& input, ParseContext& ctx, ParsedModel* out) = 0;
};

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_PARSER_H_
