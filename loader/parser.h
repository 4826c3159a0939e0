// One parser per input format, behind this interface. A parser runs only
// inside the sandboxed worker and never executes, unmarshals, imports,
// dlopens or opens anything: it reads bytes and describes what they contain.
#ifndef SAFEMODEL_LOADER_PARSER_H_
#define SAFEMODEL_LOADER_PARSER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "converter/byte_reader.h"
#include "loader/model.h"
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
};

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
  std::vector<Finding> TakeFindings() { return std::move(findings_); }

 private:
  ParseOptions options_;
  std::vector<Finding> findings_;
  uint64_t refusals_ = 0;
};

class Parser {
 public:
  virtual ~Parser() = default;
  // Trust: `input` is untrusted. On success fills *out; on a refusal returns
  // kRefused with the findings in `ctx`; any other error refuses the whole
  // file (no partial output).
  virtual Status Parse(ByteView input, ParseContext& ctx, ParsedModel* out) = 0;
};

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_PARSER_H_
