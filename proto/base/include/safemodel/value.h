// File: safemodel/value.h
//
// A typed, data-only tree: the architecture and metadata of a converted model.
// A Value is null, bool, int64, double, string (UTF-8), bytes, list or map.
// Maps keep insertion order (which makes conversion deterministic) and have
// unique keys. There is no way to express code or a reference to code.
//
// Trees that come from untrusted input are bounded: depth <= kMaxValueDepth and
// at most kMaxValueNodes nodes. `CheckValue` verifies this without recursion.
//
// Example:
//   Value layer = Value::Map();
//   layer.Set("class_name", Value::String("Dense"));
//   layer.Set("units", Value::Int(10));
#ifndef SAFEMODEL_VALUE_H_
#define SAFEMODEL_VALUE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "safemodel/export.h"
#include "safemodel/status.h"

namespace safemodel {

// Deep enough for nested Keras models (each nesting level costs ~4); shallow
// enough that protobuf parsing (3 message levels per Value level) stays far
// below the stack.
inline constexpr uint32_t kMaxValueDepth = 64;
// One million nodes is ~100x the largest real Keras config seen (MobileNetV2).
inline constexpr uint64_t kMaxValueNodes = 1'000'000;

class Value;
// Deep comparison (declared here so that it is exported).
SAFEMODEL_EXPORT bool operator==(const Value& a, const Value& b);

class SAFEMODEL_EXPORT Value {
 public:
  enum class Kind : uint8_t { kNull, kBool, kInt, kDouble, kString, kBytes, kList, kMap };
  using Entry = std::pair<std::string, Value>;

  Value() = default;  // null
  static Value Null() { return Value(); }
  static Value Bool(bool v);
  static Value Int(int64_t v);
  static Value Double(double v);
  static Value String(std::string v);
  static Value Bytes(std::string v);
  static Value List(std::vector<Value> items = {});
  static Value Map();

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_map() const { return kind_ == Kind::kMap; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_string() const { return kind_ == Kind::kString; }

  // Accessors return the stored member; they do not convert between kinds.
  bool bool_value() const { return bool_; }
  int64_t int_value() const { return int_; }
  double double_value() const { return double_; }
  const std::string& string_value() const { return string_; }  // kString and kBytes
  const std::vector<Value>& list() const { return list_; }
  std::vector<Value>& mutable_list() { return list_; }
  const std::vector<Entry>& entries() const { return map_; }
  std::vector<Entry>& mutable_entries() { return map_; }

  // Map helpers (linear scan; maps here are small).
  const Value* Find(std::string_view key) const;
  // Replaces the value of an existing key or appends a new entry.
  void Set(std::string key, Value value);
  // Appends to a list.
  void Append(Value value) { list_.push_back(std::move(value)); }

  friend bool operator==(const Value& a, const Value& b);

 private:
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  std::string string_;
  std::vector<Value> list_;
  std::vector<Entry> map_;
};

// Verifies depth, node count and unique map keys, iteratively.
// `what` names the tree in the error ("architecture").
SAFEMODEL_EXPORT Status CheckValue(const Value& value, std::string_view what);

// Compact JSON rendering (bytes as {"$bytes": "<hex>"}, non-finite doubles as
// strings). Iterative; used by `inspect` and reports.
SAFEMODEL_EXPORT std::string ValueToJson(const Value& value);

}  // namespace safemodel

#endif  // SAFEMODEL_VALUE_H_
