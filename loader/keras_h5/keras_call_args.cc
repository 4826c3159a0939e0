#include "loader/keras_h5/keras_call_args.h"

#include "proto/base/byte_reader.h"
#include "proto/base/text.h"

namespace safemodel::loader::keras {

namespace {

// A JSON key as it appears in a location (keys are untrusted and unbounded).
std::string Key(const std::string& key) { return Printable(key, 64); }

const Value* Field(const Value* map, std::string_view key) {
  return map != nullptr && map->is_map() ? map->Find(key) : nullptr;
}

std::string StringField(const Value* map, std::string_view key) {
  const Value* v = Field(map, key);
  return v != nullptr && v->is_string() ? v->string_value() : std::string();
}

}  // namespace

Result<Value> GraphRef(const Value& ref, const KeyedStringSet& names, const std::string& where) {
  const auto& items = ref.list();
  if (!ref.is_list() || items.size() < 3 || !items[0].is_string() ||
      items[1].kind() != Value::Kind::kInt || items[2].kind() != Value::Kind::kInt ||
      items[1].int_value() < 0 || items[2].int_value() < 0) {
    return Status::Malformed("model_config " + where +
                             " is not a [layer, node, tensor] reference");
  }
  if (names.count(items[0].string_value()) == 0) {
    return Status::Malformed("model_config " + where + " refers to layer '" +
                             Printable(items[0].string_value()) +
                             "', which the model does not have");
  }
  Value out = Value::Map();
  out.Set("layer", items[0]);
  out.Set("node", items[1]);
  out.Set("tensor", items[2]);
  return out;
}

Result<Value> ConvertCallValue(const Value& v, const KeyedStringSet& names,
                               const std::string& where, RefForm form,
                               std::vector<Value>* refs) {
  // Iterative copy: a stack of (source, destination) pairs.
  Value out;
  struct Item {
    const Value* src;
    Value* dst;
    std::string where;
  };
  std::vector<Item> work{{&v, &out, where}};
  while (!work.empty()) {
    Item item = std::move(work.back());
    work.pop_back();
    const Value& s = *item.src;
    if (s.is_map() && StringField(&s, "class_name") == "__keras_tensor__") {
      const Value* history = Field(Field(&s, "config"), "keras_history");
      if (history == nullptr)
        return Status::Malformed("model_config " + item.where + " has no keras_history");
      SAFEMODEL_ASSIGN_OR_RETURN(*item.dst,
                                 GraphRef(*history, names, item.where + ".config.keras_history"));
      refs->push_back(*item.dst);
      continue;
    }
    if (form == RefForm::kKeras2 && s.is_list() &&
        (s.list().size() == 3 || s.list().size() == 4) && s.list()[0].is_string()) {
      SAFEMODEL_ASSIGN_OR_RETURN(*item.dst, GraphRef(s, names, item.where));
      refs->push_back(*item.dst);
      continue;
    }
    if (s.is_list()) {
      *item.dst = Value::List(std::vector<Value>(s.list().size()));
      // Push in reverse so that references are collected in order.
      for (size_t k = s.list().size(); k-- > 0;) {
        work.push_back(
            {&s.list()[k], &item.dst->mutable_list()[k], item.where + "[" + Num(k) + "]"});
      }
      continue;
    }
    if (s.is_map()) {
      *item.dst = Value::Map();
      auto& entries = item.dst->mutable_entries();
      entries.reserve(s.entries().size());
      for (const auto& [key, value] : s.entries()) entries.emplace_back(key, Value());
      for (size_t k = s.entries().size(); k-- > 0;) {
        work.push_back({&s.entries()[k].second, &entries[k].second,
                        item.where + "." + Key(s.entries()[k].first)});
      }
      continue;
    }
    *item.dst = s;
  }
  return out;
}

}  // namespace safemodel::loader::keras
