#include "loader/safetensors/header_json.h"

#include <exception>
#include <utility>

#include <nlohmann/json.hpp>

#include "proto/base/byte_reader.h"
#include "proto/base/keyed_hash.h"
#include "safemodel/limits.h"

namespace safemodel::loader {

namespace {

using Json = nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";

// The SAX events of one header. The grammar is fixed and three levels deep
// (header object, entry object, shape/offset array), so the handler is a
// small state machine over `depth_` instead of a tree: anything deeper or of
// another kind is refused at the event that shows it.
class HeaderHandler {
 public:
  bool null() { return Unexpected("null"); }
  bool boolean(bool) { return Unexpected("a boolean"); }
  bool number_integer(Json::number_integer_t v) {
    if (v < 0) return Fail(Where() + " holds the negative number " + std::to_string(v));
    return Number(static_cast<uint64_t>(v));
  }
  bool number_unsigned(Json::number_unsigned_t v) { return Number(v); }
  bool number_float(Json::number_float_t, const Json::string_t& text) {
    return Fail(Where() + " holds the number " + Printable(text) +
                ", which is not an integer that fits 64 bits");
  }
  bool binary(Json::binary_t&) { return Unexpected("binary data"); }
  bool string(Json::string_t& s);
  bool start_object(std::size_t);
  bool key(Json::string_t& k);
  bool end_object();
  bool start_array(std::size_t);
  bool end_array();
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    return Fail("safetensors header is not valid JSON (byte " + std::to_string(position) +
                " of the header): " + Printable(e.what(), 160));
  }

  Status status() const { return error_; }
  SafetensorsHeader Take() { return std::move(header_); }

 private:
  enum class Field { kNone, kDtype, kShape, kOffsets };

  bool Fail(std::string message) {
    if (error_.ok()) error_ = Status::Malformed(std::move(message));
    return false;
  }
  bool Unexpected(std::string_view what) {
    if (depth_ == 0) return Fail("safetensors header is " + std::string(what) + ", not an object");
    return Fail(Where() + " holds " + std::string(what) + Expected());
  }
  std::string Where() const;
  std::string Expected() const;
  bool Number(uint64_t v);

  int depth_ = 0;
  bool in_metadata_ = false;
  Field field_ = Field::kNone;
  bool seen_dtype_ = false, seen_shape_ = false, seen_offsets_ = false;
  std::string key_;       // the current top-level key
  std::string meta_key_;  // the current __metadata__ key
  KeyedStringSet top_keys_;
  KeyedStringSet meta_keys_;
  std::vector<uint64_t> numbers_;
  SafetensorsEntry entry_;
  SafetensorsHeader header_;
  Status error_;
};

std::string HeaderHandler::Where() const {
  if (depth_ <= 1) return "safetensors header key '" + Printable(key_) + "'";
  if (in_metadata_) {
    return "safetensors header __metadata__ key '" + Printable(meta_key_) + "'";
  }
  std::string w = "safetensors tensor '" + Printable(key_) + "'";
  switch (field_) {
    case Field::kDtype: return w + " field dtype";
    case Field::kShape: return w + " field shape";
    case Field::kOffsets: return w + " field data_offsets";
    case Field::kNone: break;
  }
  return w;
}

std::string HeaderHandler::Expected() const {
  if (depth_ <= 1) return "; a tensor entry (or __metadata__) must be an object";
  if (in_metadata_) return "; __metadata__ values must be strings";
  switch (field_) {
    case Field::kDtype: return "; dtype must be a string";
    case Field::kShape: return "; shape must be an array of non-negative integers";
    case Field::kOffsets: return "; data_offsets must be an array of two non-negative integers";
    case Field::kNone: break;
  }
  return "";
}

bool HeaderHandler::string(Json::string_t& s) {
  if (depth_ == 2 && in_metadata_) {
    header_.metadata.emplace_back(meta_key_, std::move(s));
    return true;
  }
  if (depth_ == 2 && field_ == Field::kDtype) {
    entry_.dtype = std::move(s);
    return true;
  }
  return Unexpected("a string");
}

bool HeaderHandler::start_object(std::size_t) {
  if (depth_ == 0) {
    depth_ = 1;
    return true;
  }
  if (depth_ != 1) return Unexpected("an object");
  depth_ = 2;
  in_metadata_ = key_ == kMetadataKey;
  field_ = Field::kNone;
  seen_dtype_ = seen_shape_ = seen_offsets_ = false;
  entry_ = SafetensorsEntry{};
  entry_.name = key_;
  return true;
}

bool HeaderHandler::key(Json::string_t& k) {
  if (depth_ == 1) {
    if (top_keys_.size() >= kMaxTensorCount) {
      return Fail("safetensors header has more than " + Num(kMaxTensorCount) +
                  " entries (the .safemodel format's tensor limit)");
    }
    if (!top_keys_.insert(k).second) {
      return Fail("safetensors header key '" + Printable(k) +
                  "' appears twice (duplicate keys are forbidden by the format)");
    }
    key_ = std::move(k);
    return true;
  }
  // depth_ == 2: nlohmann reports keys only inside objects, and depth 3 is
  // an array.
  if (in_metadata_) {
    if (!meta_keys_.insert(k).second) {
      return Fail("safetensors header __metadata__ key '" + Printable(k) + "' appears twice");
    }
    meta_key_ = std::move(k);
    return true;
  }
  bool* seen = nullptr;
  if (k == "dtype") {
    field_ = Field::kDtype, seen = &seen_dtype_;
  } else if (k == "shape") {
    field_ = Field::kShape, seen = &seen_shape_;
  } else if (k == "data_offsets") {
    field_ = Field::kOffsets, seen = &seen_offsets_;
  } else {
    return Fail("safetensors tensor '" + Printable(key_) + "' has the unknown field '" +
                Printable(k) + "' (only dtype, shape and data_offsets are allowed)");
  }
  if (*seen) {
    return Fail("safetensors tensor '" + Printable(key_) + "' has the field '" + k + "' twice");
  }
  *seen = true;
  return true;
}

bool HeaderHandler::end_object() {
  if (depth_ == 1) {
    depth_ = 0;
    return true;
  }
  // depth_ == 2: an entry is complete.
  depth_ = 1;
  if (in_metadata_) {
    header_.has_metadata = true;
    in_metadata_ = false;
    return true;
  }
  for (auto [seen, name] : {std::pair{seen_dtype_, "dtype"}, std::pair{seen_shape_, "shape"},
                            std::pair{seen_offsets_, "data_offsets"}}) {
    if (!seen) {
      return Fail("safetensors tensor '" + Printable(key_) + "' lacks the field " + name);
    }
  }
  header_.tensors.push_back(std::move(entry_));
  field_ = Field::kNone;
  return true;
}

bool HeaderHandler::start_array(std::size_t) {
  if (depth_ == 2 && !in_metadata_ && (field_ == Field::kShape || field_ == Field::kOffsets)) {
    depth_ = 3;
    numbers_.clear();
    return true;
  }
  return Unexpected("an array");
}

bool HeaderHandler::Number(uint64_t v) {
  if (depth_ != 3) return Unexpected("a number");
  const size_t cap = field_ == Field::kShape ? kMaxRank : 2;
  if (numbers_.size() >= cap) {
    return Fail(Where() + (field_ == Field::kShape
                               ? " has more than " + Num(kMaxRank) + " dimensions"
                               : " has more than two offsets"));
  }
  numbers_.push_back(v);
  return true;
}

bool HeaderHandler::end_array() {
  depth_ = 2;
  if (field_ == Field::kShape) {
    entry_.shape = numbers_;
    return true;
  }
  if (numbers_.size() != 2) {
    return Fail(Where() + " has " + Num(numbers_.size()) + " offsets; it must be [begin, end]");
  }
  entry_.begin = numbers_[0];
  entry_.end = numbers_[1];
  return true;
}

}  // namespace

Result<SafetensorsHeader> ParseSafetensorsHeader(std::string_view text) {
  HeaderHandler handler;
  bool ok = false;
  try {
    ok = Json::sax_parse(text.begin(), text.end(), &handler);
  } catch (const std::exception& e) {
    return Status::Malformed("safetensors header is not valid JSON: " + Printable(e.what(), 160));
  }
  if (!ok) {
    Status s = handler.status();
    return s.ok() ? Status::Malformed("safetensors header is not valid JSON") : s;
  }
  return handler.Take();
}

}  // namespace safemodel::loader
