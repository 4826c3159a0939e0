#include "loader/keras3/compile_config.h"

#include <vector>

#include "loader/keras_h5/keras_layers.h"
#include "loader/keras_h5/marshal_scan.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader::keras {

namespace {

// Custom names listed in the drop finding.
constexpr size_t kMaxListedNames = 10;

const Value* Field(const Value& map, std::string_view key) {
  return map.is_map() ? map.Find(key) : nullptr;
}

std::string StringField(const Value& map, std::string_view key) {
  const Value* v = Field(map, key);
  return v != nullptr && v->is_string() ? v->string_value() : std::string();
}

void RefuseLambda(const Value& object, const std::string& where, ParseContext& ctx) {
  const Value* config = Field(object, "config");
  const Value* code = config != nullptr ? Field(*config, "code") : nullptr;
  const Value* value = config != nullptr ? Field(*config, "value") : nullptr;
  if (code == nullptr && value != nullptr && value->is_list() && !value->list().empty()) {
    code = &value->list()[0];
  }
  std::vector<std::string> refs;
  std::string detail = " (no code text)";
  if (code != nullptr && code->is_string()) {
    MarshalScan scan;
    DecodeKerasCode(code->string_value(), &scan);
    if (scan.is_code) {
      refs = scan.names;
      detail = " (" + scan.python + " bytecode of function '" + Printable(scan.function_name) + "')";
    } else {
      detail = " (not decodable marshal data, " + std::to_string(code->string_value().size()) +
               " bytes of text)";
    }
  }
  ctx.Refuse("keras.lambda", where,
             "a __lambda__ object carries Python code" + detail +
                 "; load_model(compile=True) deserializes it",
             std::move(refs));
}

// One {"class_name": ...} object; returns false if its contents are not
// to be walked further.
bool CheckObject(const Value& map, const std::string& where, ParseContext& ctx) {
  const Value* cls = Field(map, "class_name");
  if (cls == nullptr || !cls->is_string()) return true;
  const std::string& c = cls->string_value();
  const std::string module = StringField(map, "module");
  if (c == "__lambda__" || c == "Lambda") {
    RefuseLambda(map, where, ctx);
    return false;
  }
  if (!module.empty() && !IsKerasModule(module)) {
    ctx.Refuse("keras.module", where,
               "'" + Printable(c) + "' is taken from module '" + Printable(module) +
                   "', which is not part of Keras; loading imports it",
               {module});
  }
  if (c == "function") {
    const std::string name = StringField(map, "config");
    if (!IsKerasModule(module) || !IsBuiltinLossOrMetricName(name)) {
      const std::string target = module.empty() ? name : module + "." + name;
      ctx.Refuse("keras.function_reference", where,
                 "a Python function is named ('" + Printable(target) +
                     "'); load_model(compile=True) looks it up and uses it",
                 {target});
    }
    return false;
  }
  const Value* registered = Field(map, "registered_name");
  if (registered != nullptr && registered->is_string() &&
      registered->string_value().find('>') != std::string::npos) {
    ctx.Refuse("keras.registered_name", where,
               "the registered custom object '" + Printable(registered->string_value()) +
                   "' is looked up at load time; it is the user's code",
               {registered->string_value()});
    return false;
  }
  if (!IsBuiltinCompileClass(c) && !IsAllowedAuxiliaryClass(c)) {
    ctx.Refuse("keras.class_not_allowed", where,
               "class '" + Printable(c) +
                   "' is not a Keras optimizer, schedule, loss or metric; loading needs the "
                   "user's code",
               {module.empty() ? c : module + "." + c});
    return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> ScanCompileConfig(const Value& config, const std::string& where,
                                           ParseContext& ctx) {
  struct Item {
    const Value* value;
    std::string where;
    bool name_slot;  // a string here is a loss/metric/optimizer name
  };
  std::vector<Item> work{{&config, where, false}};
  std::vector<std::string> custom_names;
  while (!work.empty()) {
    Item item = std::move(work.back());
    work.pop_back();
    const Value& v = *item.value;
    if (v.is_string()) {
      if (item.name_slot && !IsBuiltinLossOrMetricName(v.string_value()) &&
          custom_names.size() < kMaxListedNames) {
        custom_names.push_back(Printable(v.string_value(), 40));
      }
      continue;
    }
    if (v.is_list()) {
      for (size_t k = v.list().size(); k-- > 0;) {
        work.push_back({&v.list()[k], item.where + "[" + std::to_string(k) + "]", item.name_slot});
      }
      continue;
    }
    if (!v.is_map() || !CheckObject(v, item.where, ctx)) continue;
    const bool object = Field(v, "class_name") != nullptr;
    for (size_t k = v.entries().size(); k-- > 0;) {
      const auto& [key, value] = v.entries()[k];
      // Strings are names where a loss, metric or optimizer goes (also in
      // per-output dicts and lists), never inside a serialized object.
      const bool slot = !object && (item.name_slot || key == "loss" || key == "metrics" ||
                                    key == "optimizer" || key == "weighted_metrics");
      work.push_back({&value, item.where + "." + Printable(key, 64), slot});
    }
  }
  return custom_names;
}

void ScanAndDropCompileConfig(const Value& config, const std::string& where,
                              const std::string& rule, ParseContext& ctx) {
  std::string names;
  for (const std::string& n : ScanCompileConfig(config, where, ctx)) names += (names.empty() ? "'" : ", '") + n + "'";
  ctx.Drop(rule, where,
           "the training configuration (optimizer, loss, metrics) is not converted" +
               (names.empty() ? std::string()
                              : "; it names objects that are not Keras built-ins and that a "
                                "loading program would look up among its own: " + names));
}

}  // namespace safemodel::loader::keras
