#include "safemodel/reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "proto/digest.h"
#include "proto/format.h"
#include "proto/safemodel.pb.h"
#include "proto/wire/wire.h"

namespace safemodel {

const char* DigestAlgorithmName(DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::kSha256 ? "sha256" : "xxh3-128";
}

namespace {

size_t DigestSize(DigestAlgorithm a) { return a == DigestAlgorithm::kSha256 ? 32 : 16; }

bool AllZero(ByteView bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

struct Model::Impl {
  ~Impl() {
    if (mapped != nullptr) munmap(const_cast<uint8_t*>(mapped), size);
  }
  const uint8_t* mapped = nullptr;  // owned mapping, or nullptr for FromBuffer
  ByteView bytes;
  uint64_t size = 0;
  format::Prefix prefix;
  std::vector<TensorInfo> tensors;
  std::vector<const TensorInfo*> source_order;  // into tensors
  bool has_source_order = false;
  Value architecture;
  Value metadata;
  Provenance provenance;
  DigestAlgorithm algorithm = DigestAlgorithm::kXxh3_128;
  std::string header_digest;

  Status Load();
  Status CheckDigest(const TensorInfo& t) const;
};

Status Model::Impl::Load() {
  SAFEMODEL_ASSIGN_OR_RETURN(prefix, format::DecodePrefix(bytes, size));
  v1::Header header;
  if (!wire::ParseBounded(bytes.subspan(prefix.header_off, prefix.header_len), &header)) {
    return Status::Malformed("header is not a valid protobuf Header message");
  }
  if (header.format_major() != prefix.major || header.format_minor() != prefix.minor) {
    return Status::Malformed("header version differs from the prefix version");
  }
  if (header.digest_algorithm() != v1::XXH3_128 && header.digest_algorithm() != v1::SHA256) {
    return Status::Unsupported("unknown digest algorithm " +
                               std::to_string(header.digest_algorithm()));
  }
  algorithm = static_cast<DigestAlgorithm>(header.digest_algorithm());
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t data_len,
                             format::CheckTensorLayout(header.tensors()));
  if (data_len != prefix.data_len) {
    return Status::Malformed("data_len " + std::to_string(prefix.data_len) +
                             " differs from the tensor layout's " + std::to_string(data_len));
  }
  if (!AllZero(bytes.subspan(prefix.header_off + prefix.header_len,
                             prefix.data_off - prefix.header_off - prefix.header_len))) {
    return Status::Malformed("padding between header and data is not zero");
  }
  if (header.has_architecture()) {
    SAFEMODEL_ASSIGN_OR_RETURN(architecture,
                               wire::ValueFromProto(header.architecture(), "architecture"));
  }
  if (header.has_metadata()) {
    SAFEMODEL_ASSIGN_OR_RETURN(metadata, wire::ValueFromProto(header.metadata(), "metadata"));
  }
  const v1::Provenance& p = header.provenance();
  if (p.input_sha256().size() != 32) return Status::Malformed("provenance input_sha256 is not 32 bytes");
  SAFEMODEL_RETURN_IF_ERROR(wire::CheckFindings(p.findings()));
  SAFEMODEL_RETURN_IF_ERROR(wire::CheckOptions(p.options()));
  if (!IsValidUtf8(p.source_format()) || !IsValidUtf8(p.converter_version())) {
    return Status::Malformed("provenance text is not valid UTF-8");
  }
  provenance.source_format = p.source_format();
  provenance.input_sha256 = ToHex(p.input_sha256());
  provenance.input_size = p.input_size();
  provenance.converter_version = p.converter_version();
  for (const auto& f : p.findings()) provenance.findings.push_back(wire::FindingFromProto(f));
  provenance.options.assign(p.options().begin(), p.options().end());

  v1::Trailer trailer;
  if (!wire::ParseBounded(bytes.subspan(prefix.trailer_off, prefix.trailer_len), &trailer)) {
    return Status::Malformed("trailer is not a valid protobuf Trailer message");
  }
  if (trailer.digest_algorithm() != header.digest_algorithm()) {
    return Status::Malformed("trailer digest algorithm differs from the header's");
  }
  if (trailer.tensor_digests_size() != header.tensors_size()) {
    return Status::Malformed("trailer has " + std::to_string(trailer.tensor_digests_size()) +
                             " digests for " + std::to_string(header.tensors_size()) + " tensors");
  }
  const size_t dsize = DigestSize(algorithm);
  if (trailer.header_digest().size() != dsize) return Status::Malformed("bad header digest size");
  header_digest = trailer.header_digest();

  tensors.reserve(static_cast<size_t>(header.tensors_size()));
  for (int i = 0; i < header.tensors_size(); ++i) {
    const v1::TensorInfo& t = header.tensors(i);
    TensorInfo info;
    info.name = t.name();
    info.dtype = static_cast<DType>(t.dtype());
    info.shape.assign(t.shape().begin(), t.shape().end());
    info.alias_of = t.alias_of();
    info.offset = prefix.data_off + t.offset();
    info.nbytes = t.nbytes();
    info.digest = trailer.tensor_digests(i);
    // A permutation of 0..n-1 on every tensor or on none (CheckTensorLayout).
    if (t.has_source_index()) info.source_index = t.source_index();
    if (info.digest.size() != (info.alias_of.empty() ? dsize : 0)) {
      return Status::Malformed("tensor '" + Printable(info.name) + "' has a digest of " +
                               std::to_string(info.digest.size()) + " bytes");
    }
    tensors.push_back(std::move(info));
  }
  // Aliases take the location of their target (validated by CheckTensorLayout).
  for (TensorInfo& t : tensors) {
    if (t.alias_of.empty()) continue;
    auto it = std::lower_bound(tensors.begin(), tensors.end(), t.alias_of,
                               [](const TensorInfo& a, const std::string& k) { return a.name < k; });
    t.offset = it->offset;
    t.nbytes = it->nbytes;
  }
  // The source order; the indices were proved a permutation above.
  source_order.assign(tensors.size(), nullptr);
  has_source_order = !tensors.empty() && tensors[0].source_index.has_value();
  for (size_t i = 0; i < tensors.size(); ++i) {
    source_order[has_source_order ? static_cast<size_t>(*tensors[i].source_index) : i] = &tensors[i];
  }
  return Status::Ok();
}

Status Model::Impl::CheckDigest(const TensorInfo& t) const {
  if (!t.alias_of.empty()) return Status::Ok();
  std::string got = Digest(algorithm, bytes.subspan(t.offset, t.nbytes));
  if (got != t.digest) {
    return Status::Malformed("tensor '" + Printable(t.name) + "': " +
                             DigestAlgorithmName(algorithm) + " digest mismatch (stored " +
                             ToHex(t.digest) + ", computed " + ToHex(got) + ")");
  }
  if (t.dtype == DType::kBool) {
    // A writer that stored other bytes (and digested them) is still wrong.
    const auto data = bytes.subspan(t.offset, t.nbytes);
    if (size_t i = FirstNonBool(data); i < data.size()) {
      return Status::Malformed("tensor '" + Printable(t.name) + "': bool element " +
                               std::to_string(i) + " is " + std::to_string(data[i]) +
                               " (a bool is 0 or 1)");
    }
  }
  return Status::Ok();
}

Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Result<Model> Model::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // A path that names nothing is the caller's mistake (exit 2, as for a
    // conversion's input); other failures are I/O errors.
    if (errno == ENOENT) return Status::InvalidArgument("'" + path + "' does not exist");
    return Status::IoError("cannot open '" + path + "': " + std::strerror(errno));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Status::InvalidArgument("'" + path + "' is not a regular file");
  }
  auto impl = std::make_unique<Impl>();
  impl->size = static_cast<uint64_t>(st.st_size);
  if (impl->size < format::kPrefixBytes) {
    close(fd);
    return Status::Malformed("'" + path + "' is " + std::to_string(impl->size) +
                             " bytes, shorter than the 64-byte .safemodel prefix");
  }
  void* p = mmap(nullptr, impl->size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return Status::IoError("cannot map '" + path + "': " + std::strerror(errno));
  impl->mapped = static_cast<const uint8_t*>(p);
  impl->bytes = ByteView(impl->mapped, impl->size);
  SAFEMODEL_RETURN_IF_ERROR(impl->Load().WithContext(path));
  return Model(std::move(impl));
}

Result<Model> Model::FromBuffer(std::span<const std::byte> bytes) {
  auto impl = std::make_unique<Impl>();
  impl->size = bytes.size();
  impl->bytes = ByteView(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  SAFEMODEL_RETURN_IF_ERROR(impl->Load());
  return Model(std::move(impl));
}

uint32_t Model::format_major() const { return impl_->prefix.major; }
uint32_t Model::format_minor() const { return impl_->prefix.minor; }
uint64_t Model::file_size() const { return impl_->size; }
const std::vector<TensorInfo>& Model::tensors() const { return impl_->tensors; }
bool Model::has_source_order() const { return impl_->has_source_order; }
const std::vector<const TensorInfo*>& Model::tensors_in_source_order() const {
  return impl_->source_order;
}
const Value& Model::architecture() const { return impl_->architecture; }
const Value& Model::metadata() const { return impl_->metadata; }
const Provenance& Model::provenance() const { return impl_->provenance; }
DigestAlgorithm Model::digest_algorithm() const { return impl_->algorithm; }

const TensorInfo* Model::Find(std::string_view name) const {
  const auto& ts = impl_->tensors;
  auto it = std::lower_bound(ts.begin(), ts.end(), name,
                             [](const TensorInfo& a, std::string_view k) { return a.name < k; });
  return (it != ts.end() && it->name == name) ? &*it : nullptr;
}

std::span<const std::byte> Model::Data(const TensorInfo& t) const {
  return std::as_bytes(impl_->bytes.subspan(t.offset, t.nbytes));
}

Status Model::WrongType(const TensorInfo& t, DType wanted) const {
  if (wanted == DType::kInvalid) {
    return Status::InvalidArgument("tensor '" + Printable(t.name) + "' has " +
                                   std::string(DTypeName(t.dtype)) + " elements of " +
                                   std::to_string(DTypeSize(t.dtype)) +
                                   " bytes, not the size of the type asked for");
  }
  return Status::InvalidArgument("tensor '" + Printable(t.name) + "' is " +
                                 std::string(DTypeName(t.dtype)) + ", not " +
                                 std::string(DTypeName(wanted)));
}

Status Model::Misaligned(const TensorInfo& t, size_t alignment) const {
  return Status::InvalidArgument("tensor '" + Printable(t.name) + "' is not aligned to " +
                                 std::to_string(alignment) +
                                 " bytes in memory (a buffer given to FromBuffer at an "
                                 "unaligned address)");
}

Status Model::CheckBools(const TensorInfo& t) const {
  ByteView v = impl_->bytes.subspan(t.offset, t.nbytes);
  if (size_t i = FirstNonBool(v); i != v.size()) {
    return Status::Malformed("tensor '" + Printable(t.name) + "' holds the byte " +
                             std::to_string(v[i]) + " at element " + std::to_string(i) +
                             ", which is not a bool");
  }
  return Status::Ok();
}

Status Model::VerifyTensor(std::string_view name) const {
  const TensorInfo* t = Find(name);
  if (t == nullptr) return Status::InvalidArgument("no tensor named '" + std::string(name) + "'");
  return impl_->CheckDigest(*t);
}

Status Model::Verify() const {
  const Impl& m = *impl_;
  std::string got =
      Digest(m.algorithm, m.bytes.subspan(0, m.prefix.header_off + m.prefix.header_len));
  if (got != m.header_digest) return Status::Malformed("header digest mismatch");
  uint64_t cursor = m.prefix.data_off;
  // Tensors are in offset order (canonical layout); aliases are skipped.
  for (const TensorInfo& t : m.tensors) {
    if (!t.alias_of.empty()) continue;
    if (!AllZero(m.bytes.subspan(cursor, t.offset - cursor))) {
      return Status::Malformed("non-zero padding before tensor '" + Printable(t.name) + "'");
    }
    SAFEMODEL_RETURN_IF_ERROR(m.CheckDigest(t));
    cursor = t.offset + t.nbytes;
  }
  return Status::Ok();
}

}  // namespace safemodel
