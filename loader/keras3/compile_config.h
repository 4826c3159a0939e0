// A Keras 3 `compile_config` or a tf.keras `training_config`: what
// `load_model(compile=True)` (the default) deserializes after the model, so
// that code in it runs at load time although it is not part of the model.
// safemodel never converts it; it is scanned, then dropped.
//
// Refused (one finding per occurrence, at `where` plus the JSON path):
//   keras.lambda              __lambda__ objects (a loss or metric as bytecode)
//   keras.function_reference  {"class_name": "function"} outside Keras's
//                             built-in losses and metrics
//   keras.module              a `module` outside Keras
//   keras.registered_name     a registered custom name ("package>Name")
//   keras.class_not_allowed   a class that is not a Keras optimizer,
//                             learning-rate schedule, loss, metric or one of
//                             the auxiliary objects of keras_layers.h
// Names given as plain strings ("adam", "mse", a custom "focal_loss") are
// looked up among objects the loading program registered, not loaded from
// the file; those that are not Keras built-ins are listed in the drop
// finding.
//
// Worst case: O(n) for n JSON nodes (iterative walk, each node once).
//
// Trust: the configuration is untrusted (parsed from the file in the
// sandboxed worker); nothing in it is resolved or imported, only matched
// against constant tables.
#ifndef SAFEMODEL_LOADER_KERAS3_COMPILE_CONFIG_H_
#define SAFEMODEL_LOADER_KERAS3_COMPILE_CONFIG_H_

#include <string>
#include <vector>

#include "loader/parser.h"
#include "safemodel/value.h"

namespace safemodel::loader::keras {

// Scans `config` for code (refusals to ctx); returns the plain-string
// names that are not Keras built-ins (at most a few, for messages).
std::vector<std::string> ScanCompileConfig(const Value& config, const std::string& where,
                                           ParseContext& ctx);

// Scans `config` (refusals to ctx) and reports it dropped under `rule`
// ("keras.compile_config", "keras.training_config") at `where`.
void ScanAndDropCompileConfig(const Value& config, const std::string& where,
                              const std::string& rule, ParseContext& ctx);

}  // namespace safemodel::loader::keras

#endif  // SAFEMODEL_LOADER_KERAS3_COMPILE_CONFIG_H_
