#include "safemodel/value.h"

#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include "proto/base/byte_reader.h"
#include "proto/base/keyed_hash.h"

namespace safemodel {

Value Value::Bool(bool v) {
  Value out;
  out.kind_ = Kind::kBool;
  out.bool_ = v;
  return out;
}
Value Value::Int(int64_t v) {
  Value out;
  out.kind_ = Kind::kInt;
  out.int_ = v;
  return out;
}
Value Value::Double(double v) {
  Value out;
  out.kind_ = Kind::kDouble;
  out.double_ = v;
  return out;
}
Value Value::String(std::string v) {
  Value out;
  out.kind_ = Kind::kString;
  out.string_ = std::move(v);
  return out;
}
Value Value::Bytes(std::string v) {
  Value out;
  out.kind_ = Kind::kBytes;
  out.string_ = std::move(v);
  return out;
}
Value Value::List(std::vector<Value> items) {
  Value out;
  out.kind_ = Kind::kList;
  out.list_ = std::move(items);
  return out;
}
Value Value::Map() {
  Value out;
  out.kind_ = Kind::kMap;
  return out;
}

const Value* Value::Find(std::string_view key) const {
  for (const auto& [k, v] : map_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Value::Set(std::string key, Value value) {
  for (auto& [k, v] : map_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  map_.emplace_back(std::move(key), std::move(value));
}

bool operator==(const Value& a, const Value& b) {
  // Iterative pairwise comparison; trees are depth-bounded but may be wide.
  std::vector<std::pair<const Value*, const Value*>> work{{&a, &b}};
  while (!work.empty()) {
    auto [x, y] = work.back();
    work.pop_back();
    if (x->kind_ != y->kind_) return false;
    switch (x->kind_) {
      case Value::Kind::kNull: break;
      case Value::Kind::kBool:
        if (x->bool_ != y->bool_) return false;
        break;
      case Value::Kind::kInt:
        if (x->int_ != y->int_) return false;
        break;
      case Value::Kind::kDouble:
        // Bitwise, so that NaN == NaN and -0 != 0: equality means "same data".
        if (std::memcmp(&x->double_, &y->double_, sizeof(double)) != 0) return false;
        break;
      case Value::Kind::kString:
      case Value::Kind::kBytes:
        if (x->string_ != y->string_) return false;
        break;
      case Value::Kind::kList:
        if (x->list_.size() != y->list_.size()) return false;
        for (size_t i = 0; i < x->list_.size(); ++i) work.emplace_back(&x->list_[i], &y->list_[i]);
        break;
      case Value::Kind::kMap:
        if (x->map_.size() != y->map_.size()) return false;
        for (size_t i = 0; i < x->map_.size(); ++i) {
          if (x->map_[i].first != y->map_[i].first) return false;
          work.emplace_back(&x->map_[i].second, &y->map_[i].second);
        }
        break;
    }
  }
  return true;
}

Status CheckValue(const Value& value, std::string_view what) {
  struct Item {
    const Value* v;
    uint32_t depth;
  };
  std::vector<Item> work{{&value, 1}};
  uint64_t nodes = 0;
  while (!work.empty()) {
    Item item = work.back();
    work.pop_back();
    if (++nodes > kMaxValueNodes) {
      return Status::LimitExceeded(std::string(what) + " has more than " +
                                   std::to_string(kMaxValueNodes) + " nodes");
    }
    if (item.depth > kMaxValueDepth) {
      return Status::LimitExceeded(std::string(what) + " is nested deeper than " +
                                   std::to_string(kMaxValueDepth) + " levels");
    }
    const Value& v = *item.v;
    switch (v.kind()) {
      case Value::Kind::kString:
        if (!IsValidUtf8(v.string_value())) {
          return Status::Malformed(std::string(what) + " holds a string that is not valid UTF-8");
        }
        break;
      case Value::Kind::kList:
        for (const Value& child : v.list()) work.push_back({&child, item.depth + 1});
        break;
      case Value::Kind::kMap: {
        KeyedStringViewSet keys;
        keys.reserve(v.entries().size());
        for (const auto& [k, child] : v.entries()) {
          if (!IsValidUtf8(k)) {
            return Status::Malformed(std::string(what) + " holds a map key that is not valid UTF-8");
          }
          if (!keys.insert(k).second) {
            return Status::Malformed(std::string(what) + " holds a map with duplicate key '" +
                                     Printable(k) + "'");
          }
          work.push_back({&child, item.depth + 1});
        }
        break;
      }
      default:
        break;
    }
  }
  return Status::Ok();
}

namespace {

void AppendJsonString(std::string_view s, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

void AppendScalar(const Value& v, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  switch (v.kind()) {
    case Value::Kind::kNull: out->append("null"); break;
    case Value::Kind::kBool: out->append(v.bool_value() ? "true" : "false"); break;
    case Value::Kind::kInt: out->append(std::to_string(v.int_value())); break;
    case Value::Kind::kDouble: {
      double d = v.double_value();
      if (std::isnan(d)) {
        out->append("\"nan\"");
      } else if (std::isinf(d)) {
        out->append(d > 0 ? "\"inf\"" : "\"-inf\"");
      } else {
        // Shortest text that reads back as the same double (0.91, not
        // 0.91000000000000003).
        char buf[32];
        const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
        std::string_view text(buf, ec == std::errc() ? static_cast<size_t>(end - buf) : 0);
        out->append(text);
        // Keep doubles recognisable as doubles ("1.0", not "1").
        if (text.find_first_of(".eE") == std::string_view::npos) out->append(".0");
      }
      break;
    }
    case Value::Kind::kString:
      // Strings were checked to be UTF-8; invalid ones are rendered as bytes.
      if (IsValidUtf8(v.string_value())) {
        AppendJsonString(v.string_value(), out);
        break;
      }
      [[fallthrough]];
    case Value::Kind::kBytes:
      out->append("{\"$bytes\":\"");
      for (char ch : v.string_value()) {
        auto c = static_cast<unsigned char>(ch);
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 15]);
      }
      out->append("\"}");
      break;
    default:
      break;
  }
}

}  // namespace

std::string ValueToJson(const Value& value) {
  // Explicit stack of (node, next child index); output is written in order.
  struct Frame {
    const Value* v;
    size_t next;
  };
  std::string out;
  std::vector<Frame> stack;
  auto open = [&](const Value* v) {
    if (v->kind() == Value::Kind::kList) {
      out.push_back('[');
      stack.push_back({v, 0});
    } else if (v->kind() == Value::Kind::kMap) {
      out.push_back('{');
      stack.push_back({v, 0});
    } else {
      AppendScalar(*v, &out);
    }
  };
  open(&value);
  while (!stack.empty()) {
    Frame& f = stack.back();
    bool is_list = f.v->kind() == Value::Kind::kList;
    size_t count = is_list ? f.v->list().size() : f.v->entries().size();
    if (f.next == count) {
      out.push_back(is_list ? ']' : '}');
      stack.pop_back();
      continue;
    }
    if (f.next > 0) out.push_back(',');
    size_t i = f.next++;
    if (is_list) {
      open(&f.v->list()[i]);  // may invalidate `f`
    } else {
      const auto& entry = f.v->entries()[i];
      AppendJsonString(entry.first, &out);
      out.push_back(':');
      open(&entry.second);
    }
  }
  return out;
}

}  // namespace safemodel
