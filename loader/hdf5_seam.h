// The loader's one seam to libhdf5.
//
// Everything in the loader that needs libhdf5 is reached through the table
// below, never by including loader/keras_h5/keras_h5.h or
// loader/keras3/h5_store.h directly, so that a worker can be built without
// libhdf5 and the ~30 libraries it pulls in (curl, ldap, krb5, gnutls, ssh2,
// ...), which would otherwise be mapped, after lockdown, in every worker for
// every input.
//
// The table is chosen at link time: the program links exactly one of
//   safemodel_loader       hdf5_present.cc: libhdf5, the Keras HDF5 parser
//                          and Keras 3's HDF5 weight stores
//                          (safemodel-worker-hdf5, the tests, the fuzzers)
//   safemodel_loader_lean  hdf5_absent.cc: no libhdf5 (safemodel-worker)
// In the lean table every entry that would need libhdf5 records that it was
// asked for (needed() turns true for the rest of the process) and fails; the
// worker then discards whatever the parse produced and asks the parent to
// run the whole conversion again in safemodel-worker-hdf5
// (converter/protocol/conversion_protocol.h, "hand-off"). So the lean
// worker's result is used only when libhdf5 was never asked for, and is then
// the one the full worker computes by the same code.
//
// Who asks: a file in which libhdf5 finds a superblock (Keras .h5, a
// standalone *.weights.h5, an HDF5 file after a user block) asks for the
// parser; a .keras archive whose weights are model.weights.h5 (or sharded
// .weights.h5 members) and a sharded *.weights.json store ask for the weight
// store opener. A .keras archive with model.weights.npz, TensorFlow
// checkpoints and SavedModels never do.
#ifndef SAFEMODEL_LOADER_HDF5_SEAM_H_
#define SAFEMODEL_LOADER_HDF5_SEAM_H_

#include <memory>

#include "loader/keras3/weight_store.h"
#include "loader/parser.h"
#include "safemodel/status.h"

namespace safemodel::loader {

struct Hdf5Seam {
  // Whether this program links libhdf5.
  bool available;
  // Puts libhdf5 into its safe state and initialises it (keras_h5.h,
  // PrepareHdf5); called before lockdown. The lean table does nothing.
  Status (*prepare)();
  // The Keras HDF5 parser (keras_h5.h). The lean table's parser reads
  // nothing, records the need and returns kUnsupported (which the worker
  // never reports: it hands the input off instead).
  std::unique_ptr<Parser> (*new_keras_h5_parser)();
  // Opens a Keras 3 weight store in HDF5 (keras3/h5_store.h). The lean
  // table's records the need and returns kUnsupported.
  keras3::H5StoreOpener open_keras3_h5_store;
  // Lean table: whether an entry above was asked for since the process
  // started. Always false with libhdf5.
  bool (*needed)();
};

// The table of the seam library the program links (see above).
const Hdf5Seam& LinkedHdf5Seam();

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_HDF5_SEAM_H_
