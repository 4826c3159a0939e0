#include "loader/hf_index/hf_index.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>

#include "loader/keras_h5/json_value.h"
#include "proto/base/keyed_hash.h"
#include "proto/base/text.h"

namespace safemodel::loader {

namespace {

// How many first bytes detection checks for NUL: a safetensors length.
constexpr size_t kJsonSniffBytes = 8;

bool IsJsonSpace(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

Status Bad(std::string_view why) {
  return Status::Malformed("the checkpoint index " + std::string(why));
}

// The weight map, checked entry by entry; moved into *out when valid.
Status CheckWeightMap(Value& map, Value* out) {
  if (!map.is_map()) return Bad("has a \"weight_map\" that is not an object");
  if (map.entries().empty()) return Bad("has an empty \"weight_map\"");
  KeyedStringSet shards;
  for (const Value::Entry& e : map.entries()) {
    const std::string tensor = "the tensor '" + Printable(e.first) + "'";
    if (e.first.empty()) return Bad("maps a tensor with an empty name");
    if (!e.second.is_string()) {
      return Bad("maps " + tensor + " to something other than a file name string");
    }
    const std::string& shard = e.second.string_value();
    if (!IsPlainFileName(shard)) {
      return Bad("maps " + tensor + " to '" + Printable(shard) +
                 "', not a plain file name beside the index (no '/', '\\', '..', control "
                 "character or empty name)");
    }
    if (shards.insert(shard).second && shards.size() > kMaxHfIndexShards) {
      return Status::LimitExceeded("the checkpoint index names more than " + Num(kMaxHfIndexShards) +
                                   " shards");
    }
  }
  *out = std::move(map);
  return Status::Ok();
}

class HfIndexParser : public Parser {
 public:
  Status Parse(ByteView input, ParseContext& ctx, ParsedModel* out) override {
    out->source_format = "hf_index";
    if (input.size() > kMaxHfIndexBytes) {
      return Status::LimitExceeded("the checkpoint index is " + Num(input.size()) +
                                   " bytes, over the limit of " + Num(kMaxHfIndexBytes));
    }
    SAFEMODEL_ASSIGN_OR_RETURN(Value root, ParseJson(AsChars(input), "the checkpoint index", kMaxHfIndexDepth));
    if (!root.is_map()) return Bad("is not one JSON object");
    Value weight_map, metadata;
    for (Value::Entry& e : root.mutable_entries()) {
      if (e.first == "weight_map") {
        SAFEMODEL_RETURN_IF_ERROR(CheckWeightMap(e.second, &weight_map));
      } else if (e.first == "metadata") {
        if (!e.second.is_map()) return Bad("has a \"metadata\" that is not an object");
        metadata = std::move(e.second);
      } else {
        ctx.Drop("hf_index.key_dropped", "key '" + Printable(e.first) + "'",
                 "the checkpoint index's key '" + Printable(e.first) +
                     "' is neither \"weight_map\" nor \"metadata\" and is not converted");
      }
    }
    if (weight_map.is_null()) return Bad("has no \"weight_map\" object");
    out->metadata = Value::Map();
    out->metadata.mutable_entries().emplace_back("weight_map", std::move(weight_map));
    if (!metadata.is_null()) out->metadata.mutable_entries().emplace_back("metadata", std::move(metadata));
    return Status::Ok();
  }
};

}  // namespace

bool LooksLikeJsonObject(ByteView input) {
  // JSON text has no NUL byte; binary formats whose first bytes are a
  // little-endian length (safetensors: 8 bytes, the upper ones zero) have.
  const ByteView head = input.subspan(0, std::min<size_t>(input.size(), kJsonSniffBytes));
  if (std::find(head.begin(), head.end(), uint8_t{0}) != head.end()) return false;
  size_t i = 0;
  while (i < input.size() && IsJsonSpace(input[i])) ++i;
  return i < input.size() && input[i] == '{';
}

std::unique_ptr<Parser> NewHfIndexParser() { return std::make_unique<HfIndexParser>(); }

}  // namespace safemodel::loader
