#include "safemodel/safetensors.h"

#include <algorithm>
#include <exception>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "proto/base/byte_reader.h"
#include "proto/base/safetensors_format.h"

namespace safemodel {

namespace {

constexpr std::string_view kSourceMetadataKey = "safetensors_metadata";
constexpr uint64_t kHeaderAlignment = 8;

// A JSON string literal. Names and metadata of a verified Model are valid
// UTF-8 (FORMAT.md), so nlohmann's strict dump cannot throw; the catch
// keeps that a status if it ever did.
Result<std::string> Quote(std::string_view s) {
  try {
    return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const std::exception& e) {
    return Status::Internal("safetensors export: cannot write '" + Printable(s) +
                            "' as a JSON string: " + e.what());
  }
}

bool IsPyTorchSource(std::string_view format) {
  return format == "pytorch" || format == "pytorch_legacy";
}

}  // namespace

std::map<std::string, std::string> SafetensorsMetadata(const Model& model) {
  std::map<std::string, std::string> out;
  if (const Value* source = model.metadata().Find(kSourceMetadataKey);
      source != nullptr && source->is_map()) {
    for (const auto& [k, v] : source->entries()) {
      if (v.is_string()) out.emplace(k, v.string_value());
    }
  }
  const Provenance& p = model.provenance();
  if (IsPyTorchSource(p.source_format)) out.emplace("format", "pt");
  for (const TensorInfo& t : model.tensors()) {
    if (!t.alias_of.empty()) out.emplace(t.name, t.alias_of);
  }
  out["safemodel.source_format"] = p.source_format;
  out["safemodel.input_sha256"] = p.input_sha256;
  out["safemodel.converter_version"] = p.converter_version;
  out["safemodel.digest_algorithm"] = DigestAlgorithmName(model.digest_algorithm());
  return out;
}

Result<SafetensorsPlan> PlanSafetensors(const Model& model) {
  SafetensorsPlan plan;
  for (const TensorInfo& t : model.tensors()) {
    if (SafetensorsDTypeName(t.dtype).empty()) {
      return Status::Unsupported("tensor '" + Printable(t.name) + "' has dtype " +
                                 std::string(DTypeName(t.dtype)) +
                                 ", which safetensors cannot express");
    }
    if (t.name == "__metadata__") {
      return Status::Unsupported(
          "a tensor is named '__metadata__', the safetensors header's metadata key");
    }
    if (t.alias_of.empty()) {
      plan.order.push_back(&t);
    } else {
      ++plan.aliases;
    }
  }
  // The reference writer's order: larger elements first, so that with the
  // header padded to 8 every tensor starts at a multiple of its element
  // size; then by name (tensors() is sorted by name; stable_sort keeps it).
  std::stable_sort(plan.order.begin(), plan.order.end(), [](const auto* a, const auto* b) {
    return DTypeSize(a->dtype) > DTypeSize(b->dtype);
  });
  std::string json = "{\"__metadata__\":{";
  bool first = true;
  for (const auto& [k, v] : SafetensorsMetadata(model)) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::string qk, Quote(k));
    SAFEMODEL_ASSIGN_OR_RETURN(std::string qv, Quote(v));
    json += (first ? "" : ",") + qk + ":" + qv;
    first = false;
  }
  json += "}";
  for (const TensorInfo* t : plan.order) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::string name, Quote(t->name));
    json += "," + name + ":{\"dtype\":\"" + std::string(SafetensorsDTypeName(t->dtype)) +
            "\",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      json += (i == 0 ? "" : ",") + std::to_string(t->shape[i]);
    }
    const uint64_t begin = plan.buffer_bytes;
    plan.buffer_bytes += t->nbytes;  // verified sizes of one file: no overflow
    json += "],\"data_offsets\":[" + std::to_string(begin) + "," +
            std::to_string(plan.buffer_bytes) + "]}";
  }
  json += "}";
  json.resize((json.size() + kHeaderAlignment - 1) / kHeaderAlignment * kHeaderAlignment, ' ');
  if (json.size() > kMaxSafetensorsHeaderBytes) {
    return Status::LimitExceeded("the safetensors header would be " + Num(json.size()) +
                                 " bytes, over the " + Num(kMaxSafetensorsHeaderBytes) +
                                 "-byte limit of the reference reader");
  }
  plan.header.resize(kSafetensorsLengthBytes);
  for (size_t i = 0; i < kSafetensorsLengthBytes; ++i) {
    plan.header[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  }
  plan.header += json;
  return plan;
}

Status WriteSafetensors(const Model& model, const SafetensorsSink& sink) {
  if (Status s = model.Verify(); !s.ok()) {
    return s.WithContext("the .safemodel does not verify, so it is not exported");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(SafetensorsPlan plan, PlanSafetensors(model));
  SAFEMODEL_RETURN_IF_ERROR(sink(std::as_bytes(std::span(plan.header))));
  for (const TensorInfo* t : plan.order) {
    std::span<const std::byte> data = model.Data(*t);
    if (!data.empty()) SAFEMODEL_RETURN_IF_ERROR(sink(data));
  }
  return Status::Ok();
}

}  // namespace safemodel
