// Turns the tensors the walk found (Converter::tensors_) into the model's
// Tensors: torch tensors and bare storages as views of their storage's bytes
// (TorchSources), numpy arrays as views of the stream, tied views as
// aliases.
#include "loader/pickle/pickle_converter.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "loader/pickle/pickle_tree.h"
#include "loader/stream.h"

namespace safemodel::loader::pickle::internal {

// The slot in torch_sources_ of the data of the storage record at side-table
// index `storage_aux` (one record per index), resolved once by the container.
Result<uint32_t> Converter::StorageFor(uint32_t storage_aux) {
  if (storage_aux < storage_slots_.size() && storage_slots_[storage_aux] != 0) {
    return storage_slots_[storage_aux] - 1;
  }
  if (!s_.storages)
    return Status::Malformed(s_.where + ": a torch storage in a file that has none");
  if (storage_aux >= g_.storages.size()) {
    return Status::Internal(s_.where + ": a tensor without a storage record");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(StorageData d, s_.storages(g_.storages[storage_aux]));
  if (torch_sources_ == nullptr) {
    torch_sources_ = std::make_shared<TorchSources>(s_.where);
    out_->keepalive.push_back(torch_sources_);
  }
  const uint32_t slot = torch_sources_->AddStorage(std::move(d));
  if (storage_slots_.size() < g_.storages.size()) storage_slots_.resize(g_.storages.size(), 0);
  storage_slots_[storage_aux] = slot + 1;
  return slot;
}

// A numeric numpy array: a view of the stream (Fortran order as strides,
// big-endian data swapped when streamed).
Tensor Converter::NumpyTensor(const Pending& p) {
  Tensor t;
  t.name = p.name;
  const std::string& name = p.name;
  const ArrayInfo& a = g_.arrays[p.aux];
  const NpDtypeInfo& dt = g_.dtypes[p.link];
  t.dtype = dt.dtype;
  t.shape = a.shape;
  t.origin = s_.where + " numpy array '" + name + "'";
  std::vector<int64_t> strides;
  if (a.fortran && a.shape.size() > 1) {
    int64_t stride = 1;
    for (uint64_t d : a.shape) {
      strides.push_back(stride);
      stride *= static_cast<int64_t>(d == 0 ? 1 : d);
    }
  }
  const uint32_t swap = dt.byteorder == '>' ? DTypeSwapUnit(dt.dtype) : 0;
  t.source = ViewSource(a.data, swap, std::move(strides), 0);
  return t;
}

// A torch tensor (strided or quantized) or a bare storage: a view of its
// storage's bytes, read when streamed, after a bounds proof now.
Status Converter::AddTorchTensor(Pending& p) {
  Tensor t;
  std::vector<uint64_t> shape;
  std::vector<int64_t> strides;
  uint64_t offset = 0;
  if (p.record == RecordKind::kStorage) {
    const StorageInfo& s = g_.storages[p.aux];
    t.dtype = s.dtype == DType::kInvalid ? DType::kU8 : s.dtype;
    shape = {s.numel};
  } else {
    const TensorInfo& ti = g_.tensors[p.aux];
    t.dtype = ti.dtype;
    shape = ti.shape.ToVector();
    strides = g_.StridesOf(ti);
    offset = ti.offset;
  }
  SAFEMODEL_ASSIGN_OR_RETURN(const uint32_t slot, StorageFor(p.link));
  const uint64_t storage_bytes = torch_sources_->nbytes(slot);
  const uint64_t elem = DTypeSize(t.dtype);
  t.name = std::move(p.name);  // tensors_ is not read after EmitTensors
  // C-contiguous strides, which a tensor without strides has and most
  // tensors state: the source then holds none (Elements' empty strides).
  // The handlers dropped a tensor's strides only when they were these, so a
  // shape past int64 has its strides.
  const std::optional<std::vector<int64_t>> c_strides = CContiguousStrides(shape);
  if (strides.empty()) {
    if (!c_strides) {
      return Status::Malformed(torch_sources_->Origin(slot, t.name) +
                               ": the shape's element count passes int64");
    }
    strides = *c_strides;
  }
  if (!CheckView(shape, strides, offset, storage_bytes / elem, "").ok()) {
    // The message's prefix only for a view that fails.
    return CheckView(shape, strides, offset, storage_bytes / elem, torch_sources_->Origin(slot, t.name));
  }
  t.origin = Origin(torch_sources_.get(), slot);
  t.shape = shape;
  const uint32_t swap = torch_sources_->big_endian(slot) ? DTypeSwapUnit(t.dtype) : 0;
  if (swap > 1 && !big_endian_noted_) {
    big_endian_noted_ = true;
    ctx_.Note("torch.byte_order", s_.where, "big-endian storages converted to little-endian");
  }
  const uint32_t strides_slot =
      c_strides && strides == *c_strides ? 0 : torch_sources_->AddStrides(strides);
  if (p.link < views_of_storage_.size() && views_of_storage_[p.link] >= 2) {
    views_[ViewKey{p.link, t.dtype, offset, std::move(shape), std::move(strides)}].push_back(
        out_->tensors.size());
  }
  t.source = ElementSource(torch_sources_.get(), SourceArgs{slot, offset, swap, strides_slot});
  out_->tensors.push_back(std::move(t));
  return Status::Ok();
}

// Identical views of one storage are one tensor (tied weights): the
// bytewise-smallest name keeps the bytes, the others are aliases of it.
void Converter::TieViews() {
  for (auto& [key, members] : views_) {
    if (members.size() < 2) continue;
    size_t keep = members[0];
    for (size_t i : members) {
      if (out_->tensors[i].name < out_->tensors[keep].name) keep = i;
    }
    for (size_t i : members) {
      if (i == keep) continue;
      out_->tensors[i].alias_of = out_->tensors[keep].name;
      out_->tensors[i].source = nullptr;
    }
    ctx_.Note("torch.shared_storage", s_.where,
              Num(members.size()) +
                  " tensors are the same view of one storage (tied weights): stored once "
                  "as '" +
                  Printable(out_->tensors[keep].name) + "', the others are aliases");
  }
}

// Turns every registered tensor-like object into a Tensor with a lazy source.
Status Converter::EmitTensors() {
  views_of_storage_.assign(g_.storages.size(), 0);
  for (const Pending& p : tensors_) {
    if (p.record != RecordKind::kNdArray && p.link < views_of_storage_.size() &&
        views_of_storage_[p.link] < 2) {
      ++views_of_storage_[p.link];
    }
  }
  // Grown by doubling, the list (160 bytes a tensor) would hold its old and
  // new buffers at once at the conversion's peak.
  ReserveForMore(out_->tensors, tensors_.size());
  SideTableUses uses = CountSideTableUses();
  for (Pending& p : tensors_) {
    if (p.record == RecordKind::kNdArray) {
      out_->tensors.push_back(NumpyTensor(p));
    } else {
      SAFEMODEL_RETURN_IF_ERROR(AddTorchTensor(p));
      DoneWithSideTables(p, &uses);
    }
  }
  TieViews();
  return Status::Ok();
}

// With release_objects, the torch side tables' chunks that pending torch
// tensors still read (AddTorchTensor: a tensor's TensorInfo, its storage's
// StorageInfo through StorageFor, a bare storage's own); without, none are
// counted and nothing is freed.
Converter::SideTableUses Converter::CountSideTableUses() const {
  SideTableUses uses;
  if (!s_.release_objects) return uses;
  uses.tensors.assign(g_.tensors.chunks(), 0);
  uses.storages.assign(g_.storages.chunks(), 0);
  for (const Pending& p : tensors_) {
    if (p.record == RecordKind::kNdArray) continue;
    if (p.record == RecordKind::kTensor && p.aux < g_.tensors.size()) {
      ++uses.tensors[g_.tensors.ChunkOf(p.aux)];
    }
    if (p.record == RecordKind::kStorage && p.aux < g_.storages.size()) {
      ++uses.storages[g_.storages.ChunkOf(p.aux)];
    }
    if (p.link < g_.storages.size()) ++uses.storages[g_.storages.ChunkOf(p.link)];
  }
  return uses;
}

// Pending torch tensor `p` is emitted: a chunk of the side tables no later
// one reads is freed now, so that the records (104 bytes a tensor) leave as
// the tensors (160) and their sources arrive, rather than all at once after
// the last (16.8 MB at the conversion's peak for 100,000 tensors).
void Converter::DoneWithSideTables(const Pending& p, SideTableUses* uses) {
  auto done = [](auto& table, std::vector<uint32_t>& counts, size_t index) {
    if (index >= table.size() || counts.empty()) return;
    const size_t c = table.ChunkOf(index);
    if (--counts[c] == 0) table.DropChunk(c);
  };
  if (p.record == RecordKind::kTensor) done(g_.tensors, uses->tensors, p.aux);
  if (p.record == RecordKind::kStorage) done(g_.storages, uses->storages, p.aux);
  done(g_.storages, uses->storages, p.link);
}

}  // namespace safemodel::loader::pickle::internal
