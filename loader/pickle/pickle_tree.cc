#include "loader/pickle/pickle_tree.h"

#include <charconv>
#include <cmath>
#include <utility>

#include "proto/base/byte_reader.h"
#include "proto/base/text.h"

namespace safemodel::loader::pickle {

std::string FloatRepr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, f);
  std::string s(buf, p);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

double HalfToDouble(uint16_t h) {
  int exp = (h >> 10) & 0x1F;
  int mant = h & 0x3FF;
  double v;
  if (exp == 0) {
    v = std::ldexp(mant, -24);
  } else if (exp == 31) {
    v = mant ? std::nan("") : INFINITY;
  } else {
    v = std::ldexp(mant + 1024, exp - 25);
  }
  return (h & 0x8000) ? -v : v;
}

namespace {

// The one rule of CContiguousStrides: calls visit(d, stride) from the last
// dimension to the first; false when a product passes int64 or visit does.
template <typename Visit>
bool ForEachCStride(std::span<const uint64_t> shape, Visit visit) {
  int64_t stride = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (!visit(d, stride)) return false;
    const uint64_t size = shape[d] == 0 ? 1 : shape[d];
    if (size > static_cast<uint64_t>(INT64_MAX) ||
        __builtin_mul_overflow(stride, static_cast<int64_t>(size), &stride)) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<std::vector<int64_t>> CContiguousStrides(std::span<const uint64_t> shape) {
  std::vector<int64_t> strides(shape.size());
  if (!ForEachCStride(shape, [&](size_t d, int64_t s) { return strides[d] = s, true; })) {
    return std::nullopt;
  }
  return strides;
}

bool IsCContiguous(std::span<const uint64_t> shape, std::span<const int64_t> strides) {
  return strides.size() == shape.size() &&
         ForEachCStride(shape, [&](size_t d, int64_t s) { return strides[d] == s; });
}

// A cheap bounds proof for a strided view (element units), done at parse
// time so that a bad view is reported before anything is streamed
// (StreamElements repeats it on the real bytes).
Status CheckView(const std::vector<uint64_t>& shape, const std::vector<int64_t>& strides,
                 uint64_t offset, uint64_t capacity, const std::string& what) {
  uint64_t count = 1;
  for (uint64_t d : shape) {
    if (!CheckedMul(count, d, &count)) return Status::Malformed(what + ": element count overflows");
  }
  if (count == 0) return Status::Ok();
  __extension__ using Int128 = __int128;
  Int128 hi = offset;
  for (size_t d = 0; d < shape.size(); ++d) {
    Int128 span = static_cast<Int128>(shape[d] - 1) * strides[d];
    if (span > static_cast<Int128>(capacity)) {
      return Status::Malformed(what + ": stride " + std::to_string(strides[d]) + " of dimension " +
                               Num(d) + " reaches outside its storage");
    }
    hi += span;
  }
  if (hi >= static_cast<Int128>(capacity)) {
    return Status::Malformed(what + ": offset " + Num(offset) + " and strides reach element " +
                             std::to_string(static_cast<int64_t>(hi)) + " of a storage of " +
                             Num(capacity) + " elements");
  }
  return Status::Ok();
}

// The architecture of a module tree: {class, training, config, parameters,
// buffers, children}. Works on the metadata Value (iteratively).
Value ModuleArchitecture(const Value& root) {
  struct Item {
    const Value* module;
    Value* out;
  };
  Value result;
  std::vector<Item> work{{&root, &result}};
  while (!work.empty()) {
    Item it = work.back();
    work.pop_back();
    const Value& m = *it.module;
    Value a = Value::Map();
    Value config = Value::Map(), params = Value::Map(), buffers = Value::Map(),
          children = Value::Map();
    std::vector<std::pair<std::string, const Value*>> child_modules;
    for (const auto& [k, v] : m.entries()) {
      if (k == "$class") {
        a.mutable_entries().emplace_back("class", v);
      } else if (k == "$user_class") {
        a.mutable_entries().emplace_back("user_class", v);
      } else if (k == "training") {
        a.mutable_entries().emplace_back("training", v);
      } else if ((k == "_parameters" || k == "_buffers") && v.is_map()) {
        Value& dst = k == "_parameters" ? params : buffers;
        for (const auto& [pk, pv] : v.entries()) {
          if (pk == "$attrs") continue;
          const Value* ref = pv.is_map() ? pv.Find("$tensor") : nullptr;
          dst.mutable_entries().emplace_back(pk, ref ? *ref : Value::Null());
        }
      } else if (k == "_modules" && v.is_map()) {
        for (const auto& [ck, cv] : v.entries()) {
          if (ck == "$attrs") continue;
          if (cv.is_map() && cv.Find("$class")) {
            child_modules.emplace_back(ck, &cv);
          } else {
            children.mutable_entries().emplace_back(ck, Value::Null());
          }
        }
      } else if (!k.empty() && k[0] != '_' && k[0] != '$') {
        config.mutable_entries().emplace_back(k, v);
      }
    }
    a.mutable_entries().emplace_back("config", std::move(config));
    a.mutable_entries().emplace_back("parameters", std::move(params));
    a.mutable_entries().emplace_back("buffers", std::move(buffers));
    children.mutable_entries().reserve(children.entries().size() + child_modules.size());
    for (const auto& [ck, cv] : child_modules) children.mutable_entries().emplace_back(ck, Value());
    a.mutable_entries().emplace_back("children", std::move(children));
    *it.out = std::move(a);
    Value& kids = it.out->mutable_entries().back().second;
    size_t base = kids.entries().size() - child_modules.size();
    for (size_t i = 0; i < child_modules.size(); ++i) {
      work.push_back({child_modules[i].second, &kids.mutable_entries()[base + i].second});
    }
  }
  return result;
}

}  // namespace safemodel::loader::pickle
