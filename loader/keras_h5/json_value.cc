#include "loader/keras_h5/json_value.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "proto/base/byte_reader.h"
#include "proto/base/keyed_hash.h"

namespace safemodel::loader {

namespace {

using Json = nlohmann::json;

// Python's non-finite float tokens are rewritten (outside strings) into
// strings starting with a NUL, which the builder turns back into doubles.
// A real string cannot produce this ambiguity in a Keras config, and the
// worst case is a string read as a number.
constexpr char kNonFiniteMark = '\0';

// Returns true and fills *out if `text` has NaN/Infinity tokens.
bool RewriteNonFinite(std::string_view text, std::string* out) {
  std::string result;
  bool found = false, in_string = false, escaped = false;
  size_t copied = 0;  // text[0, copied) is already in `result`
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      ++i;
      continue;
    }
    if (c == '"') {
      in_string = true;
      ++i;
      continue;
    }
    std::string_view token;
    for (std::string_view t : {"-Infinity", "Infinity", "NaN"}) {
      if (text.substr(i, t.size()) == t) {
        token = t;
        break;
      }
    }
    if (token.empty()) {
      ++i;
      continue;
    }
    result.append(text.substr(copied, i - copied));
    result += "\"\\u0000";
    result += token;
    result += '"';
    i += token.size();
    copied = i;
    found = true;
  }
  if (!found) return false;
  result.append(text.substr(copied));
  *out = std::move(result);
  return true;
}

class Builder {
 public:
  Builder(std::string_view what, uint32_t max_depth) : what_(what), max_depth_(max_depth) {}

  bool null() { return Put(Value::Null()); }
  bool boolean(bool b) { return Put(Value::Bool(b)); }
  bool number_integer(Json::number_integer_t v) { return Put(Value::Int(v)); }
  bool number_unsigned(Json::number_unsigned_t v) {
    if (v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Put(Value::Int(static_cast<int64_t>(v)));
    }
    return Put(Value::Double(static_cast<double>(v)));
  }
  bool number_float(Json::number_float_t v, const Json::string_t&) { return Put(Value::Double(v)); }
  bool string(Json::string_t& s) {
    if (!s.empty() && s[0] == kNonFiniteMark) {
      std::string_view rest = std::string_view(s).substr(1);
      if (rest == "NaN") return Put(Value::Double(std::numeric_limits<double>::quiet_NaN()));
      if (rest == "Infinity") return Put(Value::Double(std::numeric_limits<double>::infinity()));
      if (rest == "-Infinity") return Put(Value::Double(-std::numeric_limits<double>::infinity()));
    }
    return Put(Value::String(std::move(s)));
  }
  bool binary(Json::binary_t&) {
    error_ = Status::Malformed(what_ + ": binary values are not JSON");
    return false;
  }
  bool start_object(std::size_t) { return Open(Value::Map()); }
  bool key(Json::string_t& k) {
    Frame& top = stack_.back();
    if (!top.keys.insert(k).second) {
      error_ =
          Status::Malformed(what_ + ": key '" + Printable(k) + "' appears twice in one object");
      return false;
    }
    top.key = std::move(k);
    return true;
  }
  bool end_object() { return Close(); }
  bool start_array(std::size_t) { return Open(Value::List()); }
  bool end_array() { return Close(); }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    error_ = Status::Malformed(what_ + " is not valid JSON (byte " + std::to_string(position) +
                               "): " + Printable(e.what(), 160));
    return false;
  }

  Status status() const { return error_; }
  Value TakeRoot() { return std::move(root_); }

 private:
  struct Frame {
    Value value;
    std::string key;
    KeyedStringSet keys;
  };

  bool Count() {
    if (++nodes_ > kMaxValueNodes) {
      error_ = Status::LimitExceeded(what_ + " has more than " + std::to_string(kMaxValueNodes) +
                                     " values");
      return false;
    }
    return true;
  }
  bool Open(Value container) {
    if (!Count()) return false;
    if (stack_.size() >= max_depth_) {
      error_ = Status::LimitExceeded(what_ + " nests deeper than " + std::to_string(max_depth_) +
                                     " levels");
      return false;
    }
    stack_.push_back(Frame{std::move(container), {}, {}});
    return true;
  }
  bool Close() {
    Value done = std::move(stack_.back().value);
    stack_.pop_back();
    return Attach(std::move(done));
  }
  bool Put(Value v) { return Count() && Attach(std::move(v)); }
  bool Attach(Value v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return true;
    }
    Frame& top = stack_.back();
    if (top.value.is_map()) {
      top.value.mutable_entries().emplace_back(std::move(top.key), std::move(v));
    } else {
      top.value.Append(std::move(v));
    }
    return true;
  }

  std::string what_;
  uint32_t max_depth_;
  std::vector<Frame> stack_;
  Value root_;
  uint64_t nodes_ = 0;
  Status error_;
};

}  // namespace

Result<Value> ParseJson(std::string_view text, std::string_view what, uint32_t max_depth) {
  if (text.size() > kMaxJsonBytes) {
    return Status::LimitExceeded(std::string(what) + " is " + std::to_string(text.size()) +
                                 " bytes of JSON, over the limit of " +
                                 std::to_string(kMaxJsonBytes));
  }
  std::string rewritten;
  if (RewriteNonFinite(text, &rewritten)) text = rewritten;
  Builder builder(what, std::min(max_depth, kMaxJsonDepth));
  bool ok = false;
  try {
    ok = Json::sax_parse(text.begin(), text.end(), &builder);
  } catch (const std::exception& e) {
    return Status::Malformed(std::string(what) + " is not valid JSON: " + Printable(e.what(), 160));
  }
  if (!ok) {
    Status s = builder.status();
    return s.ok() ? Status::Malformed(std::string(what) + " is not valid JSON") : s;
  }
  return builder.TakeRoot();
}

}  // namespace safemodel::loader
