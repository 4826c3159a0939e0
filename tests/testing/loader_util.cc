#include "tests/testing/loader_util.h"

#include "loader/registry.h"
#include "loader/stream.h"

namespace safemodel::testing {

namespace {
class StringSink final : public loader::ChunkSink {
 public:
  explicit StringSink(std::string* out) : out_(out) {}
  Status Write(ByteView chunk) override {
    out_->append(AsChars(chunk));
    return Status::Ok();
  }

 private:
  std::string* out_;
};
}  // namespace

namespace {

// Runs `parse`, then streams every tensor of the result into r->tensors.
template <typename Parse>
InProcessResult Run(loader::ParseOptions options, Parse parse) {
  InProcessResult r;
  static const Status prepared = loader::PrepareLibraries();
  if (!prepared.ok()) {
    r.status = prepared;
    return r;
  }
  loader::ParseContext ctx(options);
  loader::ParsedModel model;
  r.status = parse(ctx, &model);
  r.findings = ctx.findings();
  r.source_format = model.source_format;
  if (!r.status.ok()) return r;
  for (const Finding& f : model.findings) r.findings.push_back(f);
  r.architecture = model.architecture;
  r.metadata = model.metadata;
  for (loader::Tensor& t : model.tensors) {
    ParsedTensor pt{t.dtype, t.shape.ToVector(), t.alias_of.str(), {}};
    if (t.alias_of.empty()) {
      auto elements = t.source();
      if (!elements.ok()) {
        r.status = elements.status();
        return r;
      }
      StringSink sink(&pt.bytes);
      r.status = loader::StreamElements(*elements, t.dtype, t.shape, t.name, sink);
      if (!r.status.ok()) return r;
    }
    if (!r.tensors.emplace(t.name, std::move(pt)).second) {
      r.status = Status::Internal("duplicate tensor name " + t.name);
      return r;
    }
  }
  return r;
}

}  // namespace

InProcessResult ParseInProcess(const std::string& input, loader::ParseOptions options) {
  return Run(options, [&](loader::ParseContext& ctx, loader::ParsedModel* model) {
    return loader::ParseModel(AsBytes(input), ctx, model);
  });
}

InProcessResult ParseFilesInProcess(const loader::InputFiles& input, loader::ParseOptions options) {
  return Run(options, [&](loader::ParseContext& ctx, loader::ParsedModel* model) {
    return loader::ParseModelFiles(input, ctx, model);
  });
}

std::vector<std::string> Rules(const std::vector<Finding>& findings, Finding::Severity severity) {
  std::vector<std::string> out;
  for (const Finding& f : findings) {
    if (f.severity == severity) out.push_back(f.rule);
  }
  return out;
}

}  // namespace safemodel::testing
