// TensorFlow checkpoints (tf.train.Checkpoint, Keras save_weights in TF
// format, TF1 Saver): a tensor bundle (bundle.h), optionally with the
// `checkpoint` state file of its directory. Weights only: a checkpoint
// holds no architecture.
//
// Input (files/model_files.h): one prefix's index and data files, or for a
// directory the `checkpoint` state file and every prefix's files; the state
// file's model_checkpoint_path picks the prefix, as
// tf.train.latest_checkpoint does.
//
// Output.
//   source_format  "tf_checkpoint"
//   tensors        one per numeric bundle entry kept, named by its key
//                  ("layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE")
//   architecture   with an object graph: {"schema": "safemodel.keras/1",
//                  "kind": "tf_weights", "weight_groups": [{"path": a child
//                  of the root object, "weights": [tensor...]}]}; TF1
//                  name-based checkpoints have none (null)
//   metadata       {"kind": "tf_checkpoint", "prefix": <the bundle's name>}
// Findings. Refused: tf.checkpoint_path (the state file names a prefix
// outside its directory: TensorFlow would open it). Dropped: tf.optimizer
// (slots and optimizer variables, unless keep_optimizer), tf.metrics,
// tf.save_counter; notes tf.byte_order (big-endian bundle converted),
// tf.object_graph (read to group the keys, not output). Malformed or
// unsupported: bundle.h's rules, tf.checkpoint_state (a state file that is
// not the text format TensorFlow writes).
//
// Worst case: bundle.h's, plus O(o) for an object graph of o bytes.
//
// Trust: every file's bytes and every name are untrusted; the state file's
// paths are compared, never opened.
#ifndef SAFEMODEL_LOADER_TF_BUNDLE_CHECKPOINT_H_
#define SAFEMODEL_LOADER_TF_BUNDLE_CHECKPOINT_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "loader/parser.h"
#include "loader/tf_bundle/bundle.h"
#include "safemodel/value.h"

namespace safemodel::loader::tf {

// What a bundle key holds, by TensorFlow's and Keras's key conventions.
enum class KeyRole { kWeight, kOptimizer, kMetric, kBookkeeping };
KeyRole ClassifyKey(std::string_view key);

// Adds the bundle's tensors that a conversion keeps to out->tensors (named
// by key, in key order), reports the dropped ones, and returns the kept
// names. `where` names the bundle in findings.
std::vector<std::string> AddBundleTensors(const Bundle& bundle, std::string_view where,
                                          ParseContext& ctx, ParsedModel* out);

// [{"path": <root child>, "weights": [kept keys it reaches]}] in the root's
// child order; a key is listed once, under the first child that reaches it.
Value ObjectGraphGroups(const ObjectGraph& graph, const std::vector<std::string>& kept);

// The prefix a CheckpointState text file names (model_checkpoint_path).
// Paths that leave the directory are refused (tf.checkpoint_path) in ctx;
// the caller checks ctx.refused().
Result<std::string> ReadCheckpointState(ByteView text, ParseContext& ctx);

std::unique_ptr<MultiFileParser> NewCheckpointParser();

}  // namespace safemodel::loader::tf

#endif  // SAFEMODEL_LOADER_TF_BUNDLE_CHECKPOINT_H_
