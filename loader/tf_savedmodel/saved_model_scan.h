// A fixed-descent walk of a SavedModel's `saved_model.pb` and of
// `keras_metadata.pb`, collecting only what safemodel reports or converts:
// every op of the graph and of its function library (with where it is),
// the tags and TensorFlow version, asset file names, and the Keras JSON
// metadata of the object graph's user objects. The graph itself is never
// interpreted or converted.
//
// Field numbers (TensorFlow's protobuf schema, checked on the real TF 2.2
// SavedModel of tests/fixtures/keras3_tf, tests/fixtures/keras3_tf/LAYOUTS.md
// section 7.1):
//   SavedModel         2 meta_graphs
//   MetaGraphDef       1 meta_info_def, 2 graph_def, 6 asset_file_def,
//                      7 object_graph_def
//   MetaInfoDef        4 tags, 5 tensorflow_version
//   GraphDef           1 node, 2 library
//   NodeDef            1 name, 2 op
//   FunctionDefLibrary 1 function
//   FunctionDef        1 signature (OpDef: 1 name), 3 node_def
//   AssetFileDef       2 filename
//   SavedObjectGraph   1 nodes
//   SavedObject        4 user_object
//   SavedUserObject    1 identifier, 3 metadata
// keras_metadata.pb: SavedMetadata {1 nodes: SavedObject {2 node_id,
// 3 node_path, 4 identifier, 5 metadata, 6 version}}, decoded strictly.
//
// The walk is a fixed descent, one function per message kind, at most six
// messages deep (the schema's nesting, not the data's); fields are read one
// at a time, so memory does not grow with their number. Every length is
// checked against its enclosing message, a truncated or ill-formed message
// anywhere on the walk is malformed (tf.saved_model), and fields the walk
// does not enter are skipped by wire type.
//
// Worst case: O(n) for an n-byte file (each byte of an entered message is
// read once; a FunctionDef twice, to learn its name first).
//
// Trust: both files are untrusted; every length is checked against its
// enclosing message before it is used.
#ifndef SAFEMODEL_LOADER_TF_SAVEDMODEL_SAVED_MODEL_SCAN_H_
#define SAFEMODEL_LOADER_TF_SAVEDMODEL_SAVED_MODEL_SCAN_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "proto/base/byte_reader.h"
#include "safemodel/status.h"

namespace safemodel::loader::tf {

// Distinct op names recorded with their count; one SavedModel has a few
// dozen, a large one a few hundred.
inline constexpr uint64_t kMaxDistinctOps = 100'000;

struct OpUse {
  uint64_t count = 0;
  std::string first;  // where it first occurs ("function 'f' node 'n'")
};

struct UserObject {
  uint64_t node = 0;       // index in the object graph (0: the root)
  std::string path;        // keras_metadata.pb node_path ("root.layer-1"), or empty
  std::string identifier;  // "_tf_keras_sequential", ...
  std::string metadata;    // the Keras JSON
};

struct SavedModelScan {
  uint64_t meta_graphs = 0, nodes = 0, functions = 0;
  std::map<std::string, OpUse> ops;
  std::vector<std::string> tags;
  std::string tensorflow_version;
  std::vector<std::string> assets;         // asset_file_def filenames
  std::vector<UserObject> user_objects;    // with non-empty metadata
};

Result<SavedModelScan> ScanSavedModel(ByteView pb);

// keras_metadata.pb's nodes (every one, metadata empty or not).
Result<std::vector<UserObject>> ReadKerasMetadata(ByteView pb);

// Ops that read or write files, map memory from a path, load libraries or
// call back into Python (ModelScan's and ModelAudit's lists and TF's op
// registry). `standard` is set for the checkpoint ops every SavedModel's
// own save/restore functions contain.
bool IsFileOp(std::string_view op, bool* standard);

}  // namespace safemodel::loader::tf

#endif  // SAFEMODEL_LOADER_TF_SAVEDMODEL_SAVED_MODEL_SCAN_H_
