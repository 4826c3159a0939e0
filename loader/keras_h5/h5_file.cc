#include "loader/keras_h5/h5_file.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "safemodel/limits.h"

#include "loader/keras_h5/h5_memory_driver.h"
#include "loader/keras_h5/h5_types.h"
#include "loader/keras_h5/lzf_filter.h"

namespace safemodel::loader::h5 {

namespace {

// Link values (soft-link targets, external-link file and path) larger than
// this are not read; the finding then gives only their size.
constexpr size_t kMaxLinkValueBytes = 64 * 1024;
// References listed in one finding (virtual-dataset sources, external files).
constexpr size_t kMaxReferencesPerFinding = 16;
// Refusals listed before the walk stops (the file is refused either way; the
// report and the .safemodel format bound the number of findings).
constexpr uint64_t kMaxRefusals = 1000;

// Filters libhdf5 implements itself and Keras-era writers could use, and
// h5py's LZF, which h5py registers itself (our decoder: lzf_filter.h).
constexpr H5Z_filter_t kAllowedFilters[] = {H5Z_FILTER_DEFLATE, H5Z_FILTER_SHUFFLE,
                                            H5Z_FILTER_FLETCHER32, kLzfFilterId};
// Client values read from a filter (LZF has 3).
constexpr size_t kMaxFilterValues = 8;

// External links are refused before libhdf5 would open another file; this
// callback makes any traversal we missed fail as well.
herr_t RefuseExternalLink(const char*, const char*, const char*, const char*, unsigned*, hid_t,
                          void*) {
  return -1;
}

std::string JoinPath(const std::string& parent, std::string_view name) {
  return (parent == "/" ? std::string() : parent) + "/" + std::string(name);
}

struct LinkEntry {
  std::string name;
  H5L_type_t type;
  haddr_t address;    // hard links
  size_t value_size;  // soft and external links
};

struct LinkCollector {
  std::vector<LinkEntry> links;
  uint64_t budget;  // objects the file may still have
  bool over_budget = false;
};

herr_t CollectLink(hid_t, const char* name, const H5L_info_t* info, void* data) {
  auto* c = static_cast<LinkCollector*>(data);
  if (c->links.size() >= c->budget) {
    c->over_budget = true;
    return 1;  // stop iterating
  }
  LinkEntry e;
  e.name = name;
  e.type = info->type;
  e.address = info->type == H5L_TYPE_HARD ? info->u.address : HADDR_UNDEF;
  e.value_size = info->type == H5L_TYPE_HARD ? 0 : info->u.val_size;
  c->links.push_back(std::move(e));
  return 0;
}

// Findings travel as protobuf strings, which must be UTF-8; names taken from
// the file are escaped when they are not.
std::string Text(const std::string& s) {
  return IsValidUtf8(s) ? s : Printable(s, kMaxLinkValueBytes);
}

Status CheckLinkName(const std::string& group, const std::string& name) {
  if (!IsValidUtf8(name)) {
    return Status::Malformed("group '" + Printable(group) + "' has a link named '" +
                             Printable(name) + "', which is not UTF-8");
  }
  if (name.empty() || name == "." || name.find('/') != std::string::npos) {
    return Status::Malformed("group '" + Printable(group) + "' has a link named '" +
                             Printable(name) +
                             "', which no HDF5 writer produces (empty, '.', or containing '/')");
  }
  if (name.size() > kMaxLinkNameBytes) {
    return Status::LimitExceeded("group '" + Printable(group) + "' has a " + Num(name.size()) +
                                 "-byte link name, over the limit of " + Num(kMaxLinkNameBytes));
  }
  return Status::Ok();
}

// One fixed-length string as h5py returns it. h5py reads into a NULLPAD
// numpy 'S' type, so libhdf5 converts: a NULLTERM string ends at its first
// NUL, SPACEPAD loses its trailing spaces; numpy then drops trailing NULs.
// A NUL left inside (NULLPAD or SPACEPAD 'k\0junk') stays in what h5py and
// Keras see ('k\x00junk'), while libhdf5's own name lookups stop at it ('k'):
// such a string is refused.
// The distinct source file names of a virtual dataset's `count` mappings,
// as text, at most kMaxReferencesPerFinding of them.
std::vector<std::string> VirtualSources(hid_t dcpl, size_t count) {
  std::vector<std::string> sources;
  for (size_t k = 0; k < count && sources.size() < kMaxReferencesPerFinding; ++k) {
    ssize_t len = H5Pget_virtual_filename(dcpl, k, nullptr, 0);
    if (len <= 0 || static_cast<size_t>(len) > kMaxLinkValueBytes) continue;
    std::string name(static_cast<size_t>(len) + 1, '\0');
    if (H5Pget_virtual_filename(dcpl, k, name.data(), name.size()) < 0) continue;
    name.resize(static_cast<size_t>(len));
    name = Text(name);
    if (std::find(sources.begin(), sources.end(), name) == sources.end()) sources.push_back(name);
  }
  H5Eclear2(H5E_DEFAULT);
  return sources;
}

// The file names of a dataset's `count` external storage entries, as text,
// at most kMaxReferencesPerFinding of them.
std::vector<std::string> ExternalFiles(hid_t dcpl, int count) {
  std::vector<std::string> files;
  for (int k = 0; k < count && files.size() < kMaxReferencesPerFinding; ++k) {
    std::string name(kMaxLinkValueBytes, '\0');
    off_t offset = 0;
    hsize_t size = 0;
    if (H5Pget_external(dcpl, static_cast<unsigned>(k), name.size(), name.data(), &offset, &size) <
        0) {
      continue;
    }
    files.push_back(Text(name.c_str()));
  }
  H5Eclear2(H5E_DEFAULT);
  return files;
}

Result<std::string> FixedString(std::string s, H5T_str_t pad, const std::string& where) {
  if (pad == H5T_STR_NULLTERM) {
    s.resize(std::strlen(s.c_str()));
    return s;
  }
  if (pad == H5T_STR_SPACEPAD) s.erase(s.find_last_not_of(' ') + 1);
  s.erase(s.find_last_not_of('\0') + 1);
  if (s.find('\0') != std::string::npos) {
    return Status::Malformed(where + " ('" + Printable(s) +
                             "') holds a NUL before other bytes: Keras reads the whole string, "
                             "libhdf5 names end at the NUL");
  }
  return s;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    Reset();
    id_ = o.id_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::Reset() {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE:
      H5Fclose(id_);
      break;
    case H5I_GROUP:
      H5Gclose(id_);
      break;
    case H5I_DATASET:
      H5Dclose(id_);
      break;
    case H5I_DATATYPE:
      H5Tclose(id_);
      break;
    case H5I_DATASPACE:
      H5Sclose(id_);
      break;
    case H5I_ATTR:
      H5Aclose(id_);
      break;
    case H5I_GENPROP_LST:
      H5Pclose(id_);
      break;
    default:
      H5Idec_ref(id_);
      break;
  }
  H5Eclear2(H5E_DEFAULT);
  id_ = -1;
}

Result<std::shared_ptr<File>> File::Open(ByteView image, ParseContext& ctx) {
  std::shared_ptr<File> f(new File());
  f->self_ = f;
  f->image_ = image;
  f->fapl_ = Handle(H5Pcreate(H5P_FILE_ACCESS));
  f->lapl_ = Handle(H5Pcreate(H5P_LINK_ACCESS));
  if (!f->fapl_.valid() || !f->lapl_.valid()) {
    return Status::Internal("cannot create HDF5 property lists (" + TakeHdf5Error() + ")");
  }
  f->residency_ = MapResidency(ctx.options().droppable_map);
  SAFEMODEL_RETURN_IF_ERROR(SetMemoryDriver(f->fapl_.get(), image, &f->residency_));
  // Belt and braces for links: never traverse an external link, and allow
  // the smallest soft-link budget libhdf5 accepts.
  if (H5Pset_elink_cb(f->lapl_.get(), RefuseExternalLink, nullptr) < 0 ||
      H5Pset_nlinks(f->lapl_.get(), 1) < 0) {
    return Status::Internal("cannot restrict HDF5 link traversal (" + TakeHdf5Error() + ")");
  }
  f->file_ = Handle(H5Fopen(kMemoryImageName, H5F_ACC_RDONLY, f->fapl_.get()));
  if (!f->file_.valid()) return Hdf5Malformed("not a readable HDF5 file");
  SAFEMODEL_ASSIGN_OR_RETURN(f->base_address_, MemoryFileBaseAddress(f->file_.get()));
  SAFEMODEL_RETURN_IF_ERROR(f->Walk(ctx));
  f->residency_.DropAll();
  return f;
}

Status File::Walk(ParseContext& ctx) {
  H5O_info_t info;
  if (H5Oget_info2(file_.get(), &info, H5O_INFO_BASIC) < 0) {
    return Hdf5Malformed("cannot read the HDF5 root group");
  }
  Node root;
  root.path = "/";
  root.address = info.addr;
  nodes_.push_back(std::move(root));
  by_path_.emplace("/", 0);
  KeyedIntMap<haddr_t, size_t> seen{{info.addr, 0}};

  // Breadth-first over the growing node list: no recursion, no stack.
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].kind != Node::Kind::kGroup) continue;
    const std::string group_path = nodes_[i].path;
    const uint32_t depth = nodes_[i].depth;
    SAFEMODEL_ASSIGN_OR_RETURN(Handle group, OpenObject(nodes_[i]));
    LinkCollector links{{}, kMaxObjects - nodes_.size()};
    hsize_t idx = 0;
    if (H5Literate(group.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, CollectLink, &links) < 0) {
      return Hdf5Malformed("cannot list the links of group '" + Printable(group_path) + "'");
    }
    if (links.over_budget) {
      return Status::LimitExceeded("the file has more than " + Num(kMaxObjects) + " objects");
    }
    for (LinkEntry& link : links.links) {
      if (refusals_ >= kMaxRefusals) return Status::Ok();  // refused anyway; enough listed
      SAFEMODEL_RETURN_IF_ERROR(CheckLinkName(group_path, link.name));
      const std::string path = JoinPath(group_path, link.name);
      std::string value;
      if (link.type != H5L_TYPE_HARD && link.value_size > 0 &&
          link.value_size <= kMaxLinkValueBytes) {
        value.resize(link.value_size);
        if (H5Lget_val(group.get(), link.name.c_str(), value.data(), value.size(), lapl_.get()) <
            0) {
          value.clear();
          H5Eclear2(H5E_DEFAULT);
        }
      }
      if (link.type == H5L_TYPE_SOFT) {
        std::string target(value.c_str());
        Refuse(ctx, "hdf5.soft_link", path,
               "soft link to '" + Printable(target) +
                   "': only hard links are followed (a soft link can stand for any object)",
               {target.empty() ? "<unreadable soft-link target>" : Text(target)});
        continue;
      }
      if (link.type == H5L_TYPE_EXTERNAL) {
        unsigned flags = 0;
        const char* file_name = nullptr;
        const char* object = nullptr;
        std::string reference = "<unreadable external link>";
        if (!value.empty() &&
            H5Lunpack_elink_val(value.data(), value.size(), &flags, &file_name, &object) >= 0 &&
            file_name != nullptr && object != nullptr) {
          reference = std::string(file_name) + ":" + object;
        }
        H5Eclear2(H5E_DEFAULT);
        Refuse(ctx, "hdf5.external_link", path,
               "external link to '" + Printable(reference) + "': the model would read another file",
               {Text(reference)});
        continue;
      }
      if (link.type != H5L_TYPE_HARD) {
        Refuse(ctx, "hdf5.user_defined_link", path,
               "user-defined link of class " + Num(static_cast<uint64_t>(link.type)) +
                   ": resolving it runs code registered with libhdf5",
               {"link class " + Num(static_cast<uint64_t>(link.type))});
        continue;
      }
      auto [it, fresh] = seen.emplace(link.address, nodes_.size());
      if (!fresh) {
        return Status::Malformed("'" + Printable(path) + "' leads to the same object as '" +
                                 Printable(nodes_[it->second].path) +
                                 "' (a hard-link cycle or alias); every object must be reached "
                                 "exactly once");
      }
      if (depth + 1 > kMaxGroupDepth) {
        return Status::LimitExceeded("'" + Printable(path) + "' is nested deeper than " +
                                     Num(kMaxGroupDepth) + " groups");
      }
      Node node;
      node.path = path;
      node.address = link.address;
      node.depth = depth + 1;
      Handle object(H5Oopen_by_addr(file_.get(), link.address));
      if (!object.valid())
        return Hdf5Malformed("cannot open the object at '" + Printable(path) + "'");
      switch (H5Iget_type(object.get())) {
        case H5I_GROUP:
          node.kind = Node::Kind::kGroup;
          break;
        case H5I_DATASET:
          node.kind = Node::Kind::kDataset;
          SAFEMODEL_RETURN_IF_ERROR(InspectDataset(object.get(), &node, ctx));
          break;
        case H5I_DATATYPE:
          node.kind = Node::Kind::kDatatype;
          break;
        default:
          return Status::Malformed("'" + Printable(path) + "' is not a group, dataset or datatype");
      }
      nodes_[i].children.emplace_back(link.name, nodes_.size());
      by_path_.emplace(path, nodes_.size());
      nodes_.push_back(std::move(node));
    }
  }
  return Status::Ok();
}

Status File::InspectDataset(hid_t dataset, Node* node, ParseContext& ctx) {
  const std::string where = "dataset '" + Printable(node->path) + "'";
  DatasetInfo& info = node->dataset;
  Handle dcpl(H5Dget_create_plist(dataset));
  if (!dcpl.valid()) return Hdf5Malformed(where + ": unreadable creation properties");

  // What would make a reader leave the file or load code: refused, here,
  // whether or not the dataset is used.
  bool refused = false;
  H5D_layout_t layout = H5Pget_layout(dcpl.get());
  if (layout == H5D_VIRTUAL) {
    size_t count = 0;
    H5Pget_virtual_count(dcpl.get(), &count);
    std::vector<std::string> sources = VirtualSources(dcpl.get(), count);
    Refuse(ctx, "hdf5.virtual_dataset", node->path,
           "virtual dataset: its elements are read from " + Num(count) +
               " mapping(s) onto source datasets (other files, e.g. '" +
               Printable(sources.empty() ? std::string("?") : sources[0]) + "')",
           sources);
    info.usable = Status::Refused(where + " is a virtual dataset");
    return Status::Ok();
  }
  int externals = H5Pget_external_count(dcpl.get());
  if (externals > 0) {
    std::vector<std::string> files = ExternalFiles(dcpl.get(), externals);
    Refuse(ctx, "hdf5.external_storage", node->path,
           "the elements are stored in " + Num(static_cast<uint64_t>(externals)) +
               " external file(s) (e.g. '" +
               Printable(files.empty() ? std::string("?") : files[0]) +
               "'): the model would read another file",
           files);
    refused = true;
  }
  SAFEMODEL_ASSIGN_OR_RETURN(FilterPipeline filters, InspectFilters(dcpl.get(), *node, ctx));
  if (refused || filters.refused) {
    info.usable = Status::Refused(where + " refers outside the file");
    return Status::Ok();
  }
  if (!filters.unsupported.ok()) {
    info.usable = filters.unsupported;
    return Status::Ok();
  }
  if (layout == H5D_CONTIGUOUS) {
    info.layout = "contiguous";
  } else if (layout == H5D_COMPACT) {
    info.layout = "compact";
  } else if (layout == H5D_CHUNKED) {
    info.layout = "chunked";
  } else {
    info.usable = Status::Unsupported(where + ": unknown storage layout " +
                                      Num(static_cast<uint64_t>(layout)));
    return Status::Ok();
  }

  // Datatype (Keras marks bfloat16 with a dataset attribute).
  Handle type(H5Dget_type(dataset));
  if (!type.valid()) return Hdf5Malformed(where + ": unreadable datatype");
  bool bfloat16_attr = false;
  const H5T_class_t type_class = H5Tget_class(type.get());
  if ((type_class == H5T_OPAQUE || (type_class == H5T_FLOAT && H5Tget_size(type.get()) == 2)) &&
      H5Aexists_by_name(dataset, ".", "dtype", lapl_.get()) > 0) {
    Result<std::optional<std::string>> marker = ReadAttributeString(dataset, "dtype", node->path);
    bfloat16_attr = marker.ok() && marker->has_value() && **marker == "bfloat16";
  }
  H5Eclear2(H5E_DEFAULT);
  Status type_status = ClassifyType(type.get(), bfloat16_attr, where, &info);
  if (!type_status.ok()) {
    info.usable = type_status;
    return Status::Ok();
  }

  // Dataspace.
  Handle space(H5Dget_space(dataset));
  if (!space.valid()) return Hdf5Malformed(where + ": unreadable dataspace");
  H5S_class_t space_class = H5Sget_simple_extent_type(space.get());
  if (space_class == H5S_SIMPLE) {
    int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0 || static_cast<uint32_t>(rank) > kMaxRank) {
      info.usable = Status::Unsupported(where + ": rank " + std::to_string(rank) +
                                        " is outside 0.." + Num(kMaxRank));
      return Status::Ok();
    }
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) {
      return Hdf5Malformed(where + ": unreadable dimensions");
    }
    info.shape.assign(dims.begin(), dims.end());
  } else if (space_class != H5S_SCALAR) {
    info.usable = Status::Unsupported(where + ": has no elements (null dataspace)");
    return Status::Ok();
  }
  // Stored bytes: a widened bfloat16 layout stores 2 bytes per element.
  Result<uint64_t> bytes =
      TensorByteSize(info.shape, info.widen_bf16 ? DType::kBF16 : info.dtype, where);
  if (!bytes.ok()) {
    info.usable = bytes.status();
    return Status::Ok();
  }
  info.byte_size = *bytes;
  if (filters.lzf) {
    Status lzf =
        CheckLzfChunkBytes(dcpl.get(), H5Tget_size(type.get()), filters.lzf_chunk_bytes, where);
    if (!lzf.ok()) {
      info.usable = lzf;
      return Status::Ok();
    }
  }

  CheckStoredBytes(dataset, layout, where, &info);
  return Status::Ok();
}

void File::CheckStoredBytes(hid_t dataset, H5D_layout_t layout, const std::string& where,
                            DatasetInfo* out) const {
  DatasetInfo& info = *out;
  // Declared bytes against stored bytes.
  const uint64_t stored = H5Dget_storage_size(dataset);
  H5Eclear2(H5E_DEFAULT);
  const std::string declared = Num(info.byte_size) + " bytes (" + Num(stored) + " stored)";
  if (layout == H5D_CONTIGUOUS) {
    haddr_t offset = H5Dget_offset(dataset);
    H5Eclear2(H5E_DEFAULT);
    // For storage never allocated, libhdf5 returns HADDR_UNDEF plus the base
    // address, which is not HADDR_UNDEF when the file has a user block: the
    // allocation status says it.
    H5D_space_status_t allocation = H5D_SPACE_STATUS_ERROR;
    if (H5Dget_space_status(dataset, &allocation) < 0 || allocation == H5D_SPACE_STATUS_ERROR) {
      H5Eclear2(H5E_DEFAULT);
      info.usable = Status::Malformed(where + ": its storage allocation status cannot be read");
      return;
    }
    if (allocation == H5D_SPACE_STATUS_NOT_ALLOCATED) offset = HADDR_UNDEF;
    if (offset != HADDR_UNDEF) {
      // H5Dget_offset is the absolute file offset: libhdf5 has already added
      // the base address (the user block); the data cannot lie before it.
      const uint64_t start = offset;
      if (stored != info.byte_size) {
        info.usable = Status::Malformed(where + ": declares " + declared +
                                        "; contiguous storage must match the declared size");
      } else if (start < base_address_ || start > image_.size() ||
                 info.byte_size > image_.size() - start) {
        info.usable = Status::Malformed(where + ": its " + Num(info.byte_size) +
                                        " bytes at offset " + Num(offset) + " lie outside the " +
                                        Num(image_.size()) + "-byte file");
      } else {
        info.in_place = true;
        info.image_offset = start;
      }
      return;
    }
    // Never written: reads produce fill values. Only small ones pass.
  } else if (layout == H5D_COMPACT) {
    if (stored != info.byte_size) {
      info.usable = Status::Malformed(where + ": declares " + declared +
                                      "; compact storage must match the declared size");
    }
    return;
  }
  uint64_t allowed = 0;
  if (!CheckedMul(stored, kMaxExpansion, &allowed)) allowed = UINT64_MAX;
  allowed = std::max(allowed, kSmallDatasetBytes);
  if (info.byte_size > allowed) {
    info.usable =
        Status::LimitExceeded(where + ": declares " + declared + ", more than " +
                              Num(kMaxExpansion) + " times what it stores (a shape bomb)");
  }
}

Result<File::FilterPipeline> File::InspectFilters(hid_t dcpl, const Node& node, ParseContext& ctx) {
  const std::string where = "dataset '" + Printable(node.path) + "'";
  FilterPipeline out;
  int nfilters = H5Pget_nfilters(dcpl);
  if (nfilters < 0) return Hdf5Malformed(where + ": unreadable filter pipeline");
  for (int k = 0; k < nfilters; ++k) {
    unsigned flags = 0, config = 0;
    unsigned values[kMaxFilterValues] = {0};
    size_t nelmts = kMaxFilterValues;
    char name[256] = {0};
    H5Z_filter_t id = H5Pget_filter2(dcpl, static_cast<unsigned>(k), &flags, &nelmts, values,
                                     sizeof(name), name, &config);
    if (id < 0)
      return Hdf5Malformed(where + ": unreadable filter " + Num(static_cast<uint64_t>(k)));
    if (id == kLzfFilterId) {
      // The decoder's output size (lzf_filter.h); checked against the chunk
      // size once the datatype is known.
      out.lzf = true;
      out.lzf_chunk_bytes = nelmts > kLzfChunkBytesValue ? values[kLzfChunkBytesValue] : 0;
    }
    if (std::find(std::begin(kAllowedFilters), std::end(kAllowedFilters), id) !=
        std::end(kAllowedFilters)) {
      continue;
    }
    std::string label = "filter " + Num(static_cast<uint64_t>(id)) +
                        (name[0] != '\0' ? " ('" + Printable(name) + "')" : std::string());
    if (id >= H5Z_FILTER_RESERVED) {
      // Ids from 256 up are third-party filters, which only plugins implement
      // (except h5py's LZF, allowed above).
      Refuse(ctx, "hdf5.filter_plugin", node.path,
             label + " is not built into libhdf5: reading the dataset would load a plugin",
             {"hdf5 filter " + Num(static_cast<uint64_t>(id))});
      out.refused = true;
    } else if (out.unsupported.ok()) {
      out.unsupported = Status::Unsupported(
          where + ": " + label + " is not supported (only deflate, shuffle, fletcher32 and LZF)");
    }
  }
  H5Eclear2(H5E_DEFAULT);
  return out;
}

Status File::CheckLzfChunkBytes(hid_t dcpl, uint64_t chunk_element_bytes, uint64_t declared,
                                const std::string& where) {
  hsize_t dims[H5S_MAX_RANK] = {0};
  const int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, dims);
  H5Eclear2(H5E_DEFAULT);
  uint64_t bytes = chunk_element_bytes;
  for (int d = 0; d < rank; ++d) {
    if (!CheckedMul(bytes, dims[d], &bytes)) bytes = 0;
  }
  if (rank <= 0 || declared != bytes) {
    // h5py's writer stores the chunk size; other values make h5py size its
    // output buffer differently (and libhdf5 then reads past the decoded
    // bytes), so they are not read.
    return Status::Unsupported(where + ": the LZF filter's chunk size parameter " + Num(declared) +
                               " is not the chunk's " + Num(bytes) + " bytes");
  }
  return Status::Ok();
}

void File::Refuse(ParseContext& ctx, std::string rule, std::string location, std::string message,
                  std::vector<std::string> references) {
  ++refusals_;
  ctx.Refuse(std::move(rule), std::move(location), std::move(message), std::move(references));
}

Result<Handle> File::OpenObject(const Node& node) const {
  Handle h(H5Oopen_by_addr(file_.get(), node.address));
  if (!h.valid()) return Hdf5Malformed("cannot open '" + Printable(node.path) + "'");
  return h;
}

const Node* File::Find(std::string_view path) const {
  auto it = by_path_.find(std::string(path));
  return it == by_path_.end() ? nullptr : &nodes_[it->second];
}

const Node* File::Child(const Node& group, std::string_view name) const {
  for (const auto& [child_name, index] : group.children) {
    if (child_name == name) return &nodes_[index];
  }
  return nullptr;
}

Result<const Node*> File::Resolve(const Node& base, std::string_view relative) const {
  const Node* node = &base;
  size_t start = 0;
  while (true) {
    size_t end = relative.find('/', start);
    std::string_view part =
        relative.substr(start, end == std::string_view::npos ? end : end - start);
    if (part.empty() || part == "." || part == "..") {
      return Status::Malformed("path '" + Printable(relative) + "' (under '" +
                               Printable(base.path) + "') has an empty, '.' or '..' component");
    }
    if (node->kind != Node::Kind::kGroup) return static_cast<const Node*>(nullptr);
    node = Child(*node, part);
    if (node == nullptr) return static_cast<const Node*>(nullptr);
    if (end == std::string_view::npos) return node;
    start = end + 1;
  }
}

bool File::HasAttribute(const Node& node, std::string_view name) const {
  Result<Handle> object = OpenObject(node);
  if (!object.ok()) return false;
  htri_t exists = H5Aexists_by_name(object->get(), ".", std::string(name).c_str(), lapl_.get());
  H5Eclear2(H5E_DEFAULT);
  return exists > 0;
}

Result<std::optional<std::vector<std::string>>> File::ReadStrings(const Node& node,
                                                                  std::string_view name) const {
  SAFEMODEL_ASSIGN_OR_RETURN(Handle object, OpenObject(node));
  return ReadAttributeStrings(object.get(), name, node.path, false);
}

Result<std::optional<std::vector<std::string>>> File::ReadChunkedStrings(
    const Node& node, std::string_view name) const {
  SAFEMODEL_ASSIGN_OR_RETURN(Handle object, OpenObject(node));
  SAFEMODEL_ASSIGN_OR_RETURN(auto whole, ReadAttributeStrings(object.get(), name, node.path, true));
  if (whole.has_value()) return whole;
  std::vector<std::string> all;
  uint64_t bytes = 0;
  for (uint64_t k = 0;; ++k) {
    if (k >= kMaxAttributeChunks) {
      return Status::LimitExceeded("'" + Printable(node.path) + "' has more than " +
                                   Num(kMaxAttributeChunks) + " chunks of attribute '" +
                                   Printable(name) + "'");
    }
    std::string chunk_name = std::string(name) + Num(k);
    SAFEMODEL_ASSIGN_OR_RETURN(auto chunk,
                               ReadAttributeStrings(object.get(), chunk_name, node.path, true));
    if (!chunk.has_value()) {
      if (k == 0) return std::optional<std::vector<std::string>>();
      break;
    }
    for (std::string& s : *chunk) {
      bytes += s.size();
      if (all.size() >= kMaxAttributeElements || bytes > kMaxAttributeBytes) {
        return Status::LimitExceeded(
            "attribute '" + Printable(name) + "' of '" + Printable(node.path) + "' exceeds " +
            Num(kMaxAttributeElements) + " strings or " + Num(kMaxAttributeBytes) + " bytes");
      }
      all.push_back(std::move(s));
    }
  }
  return std::optional<std::vector<std::string>>(std::move(all));
}

Result<std::optional<std::string>> File::ReadString(const Node& node, std::string_view name) const {
  SAFEMODEL_ASSIGN_OR_RETURN(Handle object, OpenObject(node));
  return ReadAttributeString(object.get(), name, node.path);
}

Result<std::optional<std::string>> File::ReadAttributeString(hid_t object, std::string_view name,
                                                             const std::string& path) const {
  SAFEMODEL_ASSIGN_OR_RETURN(auto list, ReadAttributeStrings(object, name, path, false));
  if (!list.has_value()) return std::optional<std::string>();
  if (list->size() != 1) {
    return Status::Malformed("attribute '" + Printable(name) + "' of '" + Printable(path) +
                             "' holds " + Num(list->size()) + " strings, expected one");
  }
  return std::optional<std::string>(std::move((*list)[0]));
}

Result<std::optional<std::vector<std::string>>> File::ReadAttributeStrings(hid_t object,
                                                                           std::string_view name,
                                                                           const std::string& path,
                                                                           bool name_list) const {
  const std::string attr_name(name);
  const std::string where = "attribute '" + Printable(attr_name) + "' of '" + Printable(path) + "'";
  htri_t exists = H5Aexists_by_name(object, ".", attr_name.c_str(), lapl_.get());
  if (exists < 0) return Hdf5Malformed("cannot look up " + where);
  if (exists == 0) return std::optional<std::vector<std::string>>();
  Handle attr(H5Aopen_by_name(object, ".", attr_name.c_str(), H5P_DEFAULT, lapl_.get()));
  if (!attr.valid()) return Hdf5Malformed("cannot open " + where);
  Handle type(H5Aget_type(attr.get()));
  Handle space(H5Aget_space(attr.get()));
  if (!type.valid() || !space.valid()) return Hdf5Malformed("cannot read the type of " + where);

  uint64_t count = 0;
  const H5S_class_t space_class = H5Sget_simple_extent_type(space.get());
  if (name_list && (space_class == H5S_SCALAR || space_class == H5S_NULL)) {
    // Keras reads a name list with `for n in attrs[name]`: h5py returns a
    // scalar string as str (iterated character by character) or bytes_
    // (iterated as byte values), and an empty dataspace as h5py.Empty (not
    // iterable). Reading it as one name would convert other datasets than
    // Keras loads, so it is refused.
    return Status::Malformed(where + " is a " +
                             (space_class == H5S_SCALAR ? "scalar string" : "empty dataspace") +
                             ", not a list of names: Keras would iterate it " +
                             (space_class == H5S_SCALAR ? "character by character" : "and fail"));
  }
  switch (space_class) {
    case H5S_SCALAR:
      count = 1;
      break;
    case H5S_NULL:
      count = 0;
      break;
    case H5S_SIMPLE: {
      int rank = H5Sget_simple_extent_ndims(space.get());
      hsize_t dims[1] = {0};
      if (rank != 1 || H5Sget_simple_extent_dims(space.get(), dims, nullptr) < 0) {
        return Status::Malformed(where + " is not a scalar or a list (rank " +
                                 std::to_string(rank) + ")");
      }
      count = dims[0];
      break;
    }
    default:
      return Hdf5Malformed(where + ": unreadable dataspace");
  }
  std::vector<std::string> out;
  if (count == 0) return std::optional<std::vector<std::string>>(std::move(out));
  if (count > kMaxAttributeElements) {
    return Status::LimitExceeded(where + " holds " + Num(count) + " elements, over the limit of " +
                                 Num(kMaxAttributeElements));
  }
  if (H5Tget_class(type.get()) != H5T_STRING) {
    return Status::Malformed(where + " holds " + TypeClassName(H5Tget_class(type.get())) +
                             " values, not strings");
  }
  H5T_cset_t cset = H5Tget_cset(type.get());
  if (cset != H5T_CSET_ASCII && cset != H5T_CSET_UTF8) {
    return Status::Malformed(where + " has an unknown character set");
  }
  htri_t variable = H5Tis_variable_str(type.get());
  if (variable < 0) return Hdf5Malformed(where + ": unreadable string type");
  out.reserve(count);
  if (variable == 0) {
    const size_t size = H5Tget_size(type.get());
    uint64_t total = 0;
    if (size == 0 || !CheckedMul(count, size, &total) || total > kMaxAttributeBytes) {
      return Status::LimitExceeded(where + " holds " + Num(count) + " strings of " + Num(size) +
                                   " bytes, over the limit of " + Num(kMaxAttributeBytes) +
                                   " bytes");
    }
    std::string buffer(total, '\0');
    if (H5Aread(attr.get(), type.get(), buffer.data()) < 0)
      return Hdf5Malformed("cannot read " + where);
    const H5T_str_t pad = H5Tget_strpad(type.get());
    for (uint64_t k = 0; k < count; ++k) {
      SAFEMODEL_ASSIGN_OR_RETURN(std::string s, FixedString(buffer.substr(k * size, size), pad,
                                                            where + " item " + Num(k)));
      out.push_back(std::move(s));
    }
  } else {
    Handle memtype(H5Tcopy(H5T_C_S1));
    if (!memtype.valid() || H5Tset_size(memtype.get(), H5T_VARIABLE) < 0 ||
        H5Tset_cset(memtype.get(), cset) < 0) {
      return Status::Internal("cannot build a string type (" + TakeHdf5Error() + ")");
    }
    std::vector<char*> strings(count, nullptr);
    if (H5Aread(attr.get(), memtype.get(), strings.data()) < 0) {
      return Hdf5Malformed("cannot read " + where);
    }
    uint64_t total = 0;
    Status status;
    for (char* p : strings) {
      if (!status.ok()) break;
      size_t len = p == nullptr ? 0 : strnlen(p, kMaxAttributeBytes - total + 1);
      total += len;
      if (total > kMaxAttributeBytes) {
        status =
            Status::LimitExceeded(where + " holds more than " + Num(kMaxAttributeBytes) + " bytes");
        break;
      }
      out.emplace_back(p == nullptr ? "" : std::string(p, len));
    }
    H5Dvlen_reclaim(memtype.get(), space.get(), H5P_DEFAULT, strings.data());
    SAFEMODEL_RETURN_IF_ERROR(status);
  }
  for (const std::string& s : out) {
    if (!IsValidUtf8(s))
      return Status::Malformed(where + " holds a string that is not valid UTF-8");
  }
  return std::optional<std::vector<std::string>>(std::move(out));
}

Result<Tensor> File::MakeTensor(const Node& node, std::string name, uint64_t memory_limit) const {
  if (node.kind != Node::Kind::kDataset) {
    return Status::Malformed("'" + Printable(node.path) + "' is a group, not a dataset");
  }
  const DatasetInfo& info = node.dataset;
  SAFEMODEL_RETURN_IF_ERROR(info.usable);
  Tensor t;
  t.name = std::move(name);
  t.dtype = info.dtype;
  t.shape = info.shape;
  const std::string origin = "HDF5 dataset '" + Printable(node.path) + "'";
  t.origin = origin;
  if ((info.in_place && !info.widen_bf16) || info.byte_size == 0) {
    SAFEMODEL_ASSIGN_OR_RETURN(
        ByteView bytes,
        SubView(image_, info.in_place ? info.image_offset : 0, info.byte_size, origin));
    t.source = ViewSource(bytes, info.swap_unit);
    return t;
  }
  // The bytes of the tensor as h5py returns it: the stored elements, or
  // float32 for a widened bfloat16 layout.
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t out_bytes, TensorByteSize(info.shape, info.dtype, origin));
  if (out_bytes > memory_limit) {
    return Status::LimitExceeded(origin + " needs " + Num(out_bytes) +
                                 " bytes to read, over the memory limit of " + Num(memory_limit));
  }
  // Filtered, chunked, compact, unallocated or widened: libhdf5 reads (and
  // inflates, fills, converts) it when the tensor is streamed, into a
  // buffer of exactly the output size. The memory type is the file type
  // itself, so libhdf5 converts nothing, except a bfloat16 layout, which it
  // converts to little-endian float32 as h5py asks it to.
  std::shared_ptr<const File> self = self_.lock();
  if (self == nullptr) return Status::Internal("HDF5 file is not owned by a shared_ptr");
  const haddr_t address = node.address;
  const uint32_t swap_unit = info.widen_bf16 ? 0 : info.swap_unit;
  const bool widen = info.widen_bf16;
  t.source = [self, address, origin, out_bytes, swap_unit, widen]() -> Result<Elements> {
    Handle dataset(H5Oopen_by_addr(self->file_.get(), address));
    if (!dataset.valid()) return Hdf5Malformed("cannot open " + origin);
    Handle type(widen ? H5Tcopy(H5T_IEEE_F32LE) : H5Dget_type(dataset.get()));
    if (!type.valid()) return Hdf5Malformed("cannot read the datatype of " + origin);
    // Zero-filled (loader/model.h): libhdf5 leaves storage that was never
    // allocated untouched when the fill time is "never" (or "ifset" without
    // a fill value), where h5py, reading into np.zeros, returns zeros.
    SAFEMODEL_ASSIGN_OR_RETURN(OwnedBuffer buffer, OwnedBuffer::Allocate(out_bytes, origin));
    (void)TakeLzfError();  // only this read's decoder errors count
    if (H5Dread(dataset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data()) < 0) {
      const std::string lzf = TakeLzfError();
      if (!lzf.empty()) {
        H5Eclear2(H5E_DEFAULT);
        return Status::Malformed("cannot read " + origin + ": " + lzf);
      }
      return Hdf5Malformed("cannot read " + origin);
    }
    Elements e;
    e.view = buffer.view();
    e.owned = std::move(buffer);
    e.swap_unit = swap_unit;
    return e;
  };
  return t;
}

}  // namespace safemodel::loader::h5
