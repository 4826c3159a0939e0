// File: converter/python/model_binding.h
//
// The .safemodel reader as seen from Python (safemodel._native.Model): the
// file mapped once, tensors as NumPy arrays over the mapping, the
// architecture and metadata as plain Python data. Used by
// safemodel/__init__.py (load, safe_open) and safemodel/torch.py.
#ifndef SAFEMODEL_CONVERTER_PYTHON_MODEL_BINDING_H_
#define SAFEMODEL_CONVERTER_PYTHON_MODEL_BINDING_H_

#include <pybind11/pybind11.h>

namespace safemodel::python {

// Registers class Model and the exception it raises (ModelError, a
// subclass of `base_error`) in `m`.
void BindModel(pybind11::module_& m, pybind11::handle base_error);

}  // namespace safemodel::python

#endif  // SAFEMODEL_CONVERTER_PYTHON_MODEL_BINDING_H_
