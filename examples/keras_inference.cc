// Inference from a .safemodel alone: a converted Keras CNN run by a few
// hundred lines of C++, with no Keras, no Python and no HDF5.
//
//   safe-convert examples/models/keras_cnn.h5 cnn.safemodel
//   keras_inference cnn.safemodel            # class probabilities of two fixed images
//   keras_inference cnn.safemodel --json     # the same as JSON
//
// The network is read from the file's architecture tree (schema
// "safemodel.keras/1": model.layers[], each with class_name, config,
// inbound_nodes and the names of its weights), never assumed: the program
// interprets a chain of the layers it knows (InputLayer, Conv2D,
// BatchNormalization, ReLU, Activation, MaxPooling2D, AveragePooling2D,
// Flatten, Dropout, Dense; activations linear, relu, sigmoid, tanh,
// softmax) and refuses anything else (another layer type, a branching
// graph, a configuration it does not implement) with the layer's name.
// Tensors are read in place from the mapping (Model::Data), after Verify.
// Links only the format library (libsafemodel.so).
//
// The fixed input: two images of the InputLayer's size H x W x C, image k's
// pixel (y, x, c) = ((7y + 3x + 5k + 2c) mod 11) / 10, which
// examples/models/keras_cnn_reference.py computes the same way.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "safemodel/display.h"
#include "safemodel/reader.h"

namespace {

using safemodel::Model;
using safemodel::Status;
using safemodel::Value;

// An activation of one image: shape {H, W, C} (channels last) or {N}.
struct Act {
  std::vector<size_t> shape;
  std::vector<float> v;
};

struct Layer {
  std::string cls, name;
  const Value* config = nullptr;
  std::vector<std::string> weights;
};

Status Bad(const Layer& l, const std::string& what) {
  return Status::Unsupported("layer '" + l.name + "' (" + l.cls + "): " + what);
}

// Config accessors: a missing key or another kind is an error, never a default.
Status GetInt(const Layer& l, const char* key, int64_t* out) {
  const Value* v = l.config->Find(key);
  if (v == nullptr || v->kind() != Value::Kind::kInt)
    return Bad(l, std::string(key) + " is not an int");
  *out = v->int_value();
  return Status::Ok();
}

Status GetDouble(const Layer& l, const char* key, double* out) {
  const Value* v = l.config->Find(key);
  if (v != nullptr && v->kind() == Value::Kind::kDouble) {
    *out = v->double_value();
  } else if (v != nullptr && v->kind() == Value::Kind::kInt) {
    *out = static_cast<double>(v->int_value());
  } else {
    return Bad(l, std::string(key) + " is not a number");
  }
  return Status::Ok();
}

Status GetString(const Layer& l, const char* key, std::string* out) {
  const Value* v = l.config->Find(key);
  if (v == nullptr || !v->is_string()) return Bad(l, std::string(key) + " is not a string");
  *out = v->string_value();
  return Status::Ok();
}

Status GetBool(const Layer& l, const char* key, bool* out) {
  const Value* v = l.config->Find(key);
  if (v == nullptr || v->kind() != Value::Kind::kBool)
    return Bad(l, std::string(key) + " is not a bool");
  *out = v->bool_value();
  return Status::Ok();
}

// A pair of positive ints ([3, 3]) or one int for both.
Status GetPair(const Layer& l, const char* key, int64_t out[2]) {
  const Value* v = l.config->Find(key);
  if (v != nullptr && v->kind() == Value::Kind::kInt) {
    out[0] = out[1] = v->int_value();
  } else if (v != nullptr && v->is_list() && v->list().size() == 2 &&
             v->list()[0].kind() == Value::Kind::kInt && v->list()[1].kind() == Value::Kind::kInt) {
    out[0] = v->list()[0].int_value();
    out[1] = v->list()[1].int_value();
  } else {
    return Bad(l, std::string(key) + " is not a pair of ints");
  }
  if (out[0] < 1 || out[1] < 1 || out[0] > 4096 || out[1] > 4096)
    return Bad(l, std::string(key) + " out of range");
  return Status::Ok();
}

// Refuses a key whose value is not the one this program implements.
Status Expect(const Layer& l, const char* key, const Value& want) {
  const Value* v = l.config->Find(key);
  if (v != nullptr && !(*v == want))
    return Bad(l, std::string(key) + " " + safemodel::ValueToJson(*v) + " is not supported");
  return Status::Ok();
}

// The layer's i-th weight as floats, with the shape checked.
Status Weight(const Model& m, const Layer& l, size_t i, const std::vector<uint64_t>& shape,
              std::vector<float>* out) {
  if (i >= l.weights.size()) return Bad(l, "missing weight #" + std::to_string(i));
  const safemodel::TensorInfo* t = m.Find(l.weights[i]);
  if (t == nullptr) return Bad(l, "no tensor '" + l.weights[i] + "'");
  if (t->dtype != safemodel::DType::kF32) return Bad(l, l.weights[i] + " is not f32");
  if (t->shape != shape) return Bad(l, l.weights[i] + " has an unexpected shape");
  std::span<const std::byte> bytes = m.Data(*t);  // little-endian in the file
  out->resize(bytes.size() / 4);
  std::memcpy(out->data(), bytes.data(), out->size() * 4);
  if constexpr (std::endian::native == std::endian::big) {
    for (float& f : *out) f = std::bit_cast<float>(__builtin_bswap32(std::bit_cast<uint32_t>(f)));
  }
  return Status::Ok();
}

Status Activate(const Layer& l, const std::string& fn, Act& x) {
  if (fn == "linear") return Status::Ok();
  if (fn == "relu") {
    for (float& f : x.v) f = std::max(f, 0.0f);
  } else if (fn == "sigmoid") {
    for (float& f : x.v) f = 1.0f / (1.0f + std::exp(-f));
  } else if (fn == "tanh") {
    for (float& f : x.v) f = std::tanh(f);
  } else if (fn == "softmax") {
    if (x.shape.size() != 1) return Bad(l, "softmax over more than one axis");
    const float top = *std::max_element(x.v.begin(), x.v.end());
    float sum = 0;
    for (float& f : x.v) sum += (f = std::exp(f - top));
    for (float& f : x.v) f /= sum;
  } else {
    return Bad(l, "activation '" + fn + "' is not supported");
  }
  return Status::Ok();
}

// Output size and leading padding of one spatial axis (TensorFlow's rule).
Status Window(const Layer& l, const std::string& padding, size_t in, int64_t k, int64_t s,
              size_t* out, size_t* pad) {
  const auto uk = static_cast<size_t>(k), us = static_cast<size_t>(s);
  if (padding == "valid") {
    if (in < uk) return Bad(l, "window larger than its input");
    *out = (in - uk) / us + 1;
    *pad = 0;
  } else if (padding == "same") {
    *out = (in + us - 1) / us;
    const size_t need = (*out - 1) * us + uk;
    *pad = need > in ? (need - in) / 2 : 0;
  } else {
    return Bad(l, "padding '" + padding + "' is not supported");
  }
  return Status::Ok();
}

Status Conv2D(const Model& m, const Layer& l, Act& x) {
  if (x.shape.size() != 3) return Bad(l, "input is not H x W x C");
  int64_t filters, k[2], s[2];
  std::string padding, activation;
  bool use_bias;
  SAFEMODEL_RETURN_IF_ERROR(GetInt(l, "filters", &filters));
  SAFEMODEL_RETURN_IF_ERROR(GetPair(l, "kernel_size", k));
  SAFEMODEL_RETURN_IF_ERROR(GetPair(l, "strides", s));
  SAFEMODEL_RETURN_IF_ERROR(GetString(l, "padding", &padding));
  SAFEMODEL_RETURN_IF_ERROR(GetString(l, "activation", &activation));
  SAFEMODEL_RETURN_IF_ERROR(GetBool(l, "use_bias", &use_bias));
  SAFEMODEL_RETURN_IF_ERROR(Expect(l, "data_format", Value::String("channels_last")));
  SAFEMODEL_RETURN_IF_ERROR(Expect(l, "groups", Value::Int(1)));
  Value one = Value::List({Value::Int(1), Value::Int(1)});
  SAFEMODEL_RETURN_IF_ERROR(Expect(l, "dilation_rate", one));
  if (filters < 1 || filters > 65536) return Bad(l, "filters out of range");
  const size_t h = x.shape[0], w = x.shape[1], c = x.shape[2], f = static_cast<size_t>(filters);
  std::vector<float> kernel, bias(f, 0.0f);
  SAFEMODEL_RETURN_IF_ERROR(Weight(m, l, 0, {uint64_t(k[0]), uint64_t(k[1]), c, f}, &kernel));
  if (use_bias) SAFEMODEL_RETURN_IF_ERROR(Weight(m, l, 1, {f}, &bias));
  size_t oh, ow, ph, pw;
  SAFEMODEL_RETURN_IF_ERROR(Window(l, padding, h, k[0], s[0], &oh, &ph));
  SAFEMODEL_RETURN_IF_ERROR(Window(l, padding, w, k[1], s[1], &ow, &pw));
  Act y{{oh, ow, f}, std::vector<float>(oh * ow * f)};
  for (size_t oy = 0; oy < oh; ++oy) {
    for (size_t ox = 0; ox < ow; ++ox) {
      float* out = &y.v[(oy * ow + ox) * f];
      for (size_t o = 0; o < f; ++o) out[o] = bias[o];
      for (size_t ky = 0; ky < size_t(k[0]); ++ky) {
        const size_t iy = oy * size_t(s[0]) + ky;  // in padded coordinates
        if (iy < ph || iy - ph >= h) continue;
        for (size_t kx = 0; kx < size_t(k[1]); ++kx) {
          const size_t ix = ox * size_t(s[1]) + kx;
          if (ix < pw || ix - pw >= w) continue;
          const float* in = &x.v[((iy - ph) * w + (ix - pw)) * c];
          const float* kk = &kernel[(ky * size_t(k[1]) + kx) * c * f];
          for (size_t ci = 0; ci < c; ++ci) {
            for (size_t o = 0; o < f; ++o) out[o] += in[ci] * kk[ci * f + o];
          }
        }
      }
    }
  }
  x = std::move(y);
  return Activate(l, activation, x);
}

Status BatchNorm(const Model& m, const Layer& l, Act& x) {
  double eps;
  bool center, scale;
  SAFEMODEL_RETURN_IF_ERROR(GetDouble(l, "epsilon", &eps));
  SAFEMODEL_RETURN_IF_ERROR(GetBool(l, "center", &center));
  SAFEMODEL_RETURN_IF_ERROR(GetBool(l, "scale", &scale));
  // The last axis only: [3] for H x W x C, [1] after Flatten, or -1.
  const Value* axis = l.config->Find("axis");
  const int64_t last = static_cast<int64_t>(x.shape.size());
  const Value* a =
      axis != nullptr && axis->is_list() && axis->list().size() == 1 ? &axis->list()[0] : axis;
  if (a == nullptr || a->kind() != Value::Kind::kInt ||
      (a->int_value() != last && a->int_value() != -1)) {
    return Bad(l, "normalizes another axis than the last");
  }
  const size_t c = x.shape.back();
  std::vector<float> gamma(c, 1.0f), beta(c, 0.0f), mean, var;
  size_t i = 0;  // Keras orders them gamma, beta, moving_mean, moving_variance
  if (scale) SAFEMODEL_RETURN_IF_ERROR(Weight(m, l, i++, {c}, &gamma));
  if (center) SAFEMODEL_RETURN_IF_ERROR(Weight(m, l, i++, {c}, &beta));
  SAFEMODEL_RETURN_IF_ERROR(Weight(m, l, i++, {c}, &mean));
  SAFEMODEL_RETURN_IF_ERROR(Weight(m, l, i++, {c}, &var));
  for (size_t j = 0; j < x.v.size(); ++j) {
    const size_t ch = j % c;
    x.v[j] =
        gamma[ch] * (x.v[j] - mean[ch]) / std::sqrt(var[ch] + static_cast<float>(eps)) + beta[ch];
  }
  return Status::Ok();
}

Status Pool(const Layer& l, bool max, Act& x) {
  if (x.shape.size() != 3) return Bad(l, "input is not H x W x C");
  int64_t k[2], s[2];
  std::string padding;
  SAFEMODEL_RETURN_IF_ERROR(GetPair(l, "pool_size", k));
  SAFEMODEL_RETURN_IF_ERROR(GetPair(l, "strides", s));
  SAFEMODEL_RETURN_IF_ERROR(GetString(l, "padding", &padding));
  SAFEMODEL_RETURN_IF_ERROR(Expect(l, "data_format", Value::String("channels_last")));
  const size_t h = x.shape[0], w = x.shape[1], c = x.shape[2];
  size_t oh, ow, ph, pw;
  SAFEMODEL_RETURN_IF_ERROR(Window(l, padding, h, k[0], s[0], &oh, &ph));
  SAFEMODEL_RETURN_IF_ERROR(Window(l, padding, w, k[1], s[1], &ow, &pw));
  Act y{{oh, ow, c}, std::vector<float>(oh * ow * c)};
  for (size_t oy = 0; oy < oh; ++oy) {
    for (size_t ox = 0; ox < ow; ++ox) {
      for (size_t ch = 0; ch < c; ++ch) {
        float acc = max ? -INFINITY : 0.0f;
        size_t n = 0;  // padding is not counted (Keras' average pooling)
        for (size_t ky = 0; ky < size_t(k[0]); ++ky) {
          const size_t iy = oy * size_t(s[0]) + ky;
          if (iy < ph || iy - ph >= h) continue;
          for (size_t kx = 0; kx < size_t(k[1]); ++kx) {
            const size_t ix = ox * size_t(s[1]) + kx;
            if (ix < pw || ix - pw >= w) continue;
            const float v = x.v[((iy - ph) * w + (ix - pw)) * c + ch];
            acc = max ? std::max(acc, v) : acc + v;
            ++n;
          }
        }
        y.v[(oy * ow + ox) * c + ch] = max || n == 0 ? acc : acc / static_cast<float>(n);
      }
    }
  }
  x = std::move(y);
  return Status::Ok();
}

Status Dense(const Model& m, const Layer& l, Act& x) {
  if (x.shape.size() != 1) return Bad(l, "input is not flat (Dense on H x W x C is not supported)");
  int64_t units;
  std::string activation;
  bool use_bias;
  SAFEMODEL_RETURN_IF_ERROR(GetInt(l, "units", &units));
  SAFEMODEL_RETURN_IF_ERROR(GetString(l, "activation", &activation));
  SAFEMODEL_RETURN_IF_ERROR(GetBool(l, "use_bias", &use_bias));
  if (units < 1 || units > (1 << 20)) return Bad(l, "units out of range");
  const size_t n = x.shape[0], u = static_cast<size_t>(units);
  std::vector<float> kernel, bias(u, 0.0f);
  SAFEMODEL_RETURN_IF_ERROR(Weight(m, l, 0, {n, u}, &kernel));
  if (use_bias) SAFEMODEL_RETURN_IF_ERROR(Weight(m, l, 1, {u}, &bias));
  Act y{{u}, bias};
  for (size_t i = 0; i < n; ++i) {
    for (size_t o = 0; o < u; ++o) y.v[o] += x.v[i] * kernel[i * u + o];
  }
  x = std::move(y);
  return Activate(l, activation, x);
}

Status ReLU(const Layer& l, Act& x) {
  double max_value = INFINITY, slope, threshold;
  const Value* mv = l.config->Find("max_value");
  if (mv != nullptr && !mv->is_null())
    SAFEMODEL_RETURN_IF_ERROR(GetDouble(l, "max_value", &max_value));
  SAFEMODEL_RETURN_IF_ERROR(GetDouble(l, "negative_slope", &slope));
  SAFEMODEL_RETURN_IF_ERROR(GetDouble(l, "threshold", &threshold));
  for (float& f : x.v) {
    const double d = f;
    f = static_cast<float>(d >= max_value   ? max_value
                           : d >= threshold ? d
                                            : slope * (d - threshold));
  }
  return Status::Ok();
}

Status Apply(const Model& m, const Layer& l, Act& x) {
  if (l.cls == "InputLayer" || l.cls == "Dropout")
    return Status::Ok();  // Dropout: identity at inference
  if (l.cls == "Conv2D") return Conv2D(m, l, x);
  if (l.cls == "BatchNormalization") return BatchNorm(m, l, x);
  if (l.cls == "ReLU") return ReLU(l, x);
  if (l.cls == "MaxPooling2D" || l.cls == "AveragePooling2D")
    return Pool(l, l.cls == "MaxPooling2D", x);
  if (l.cls == "Dense") return Dense(m, l, x);
  if (l.cls == "Flatten") {
    SAFEMODEL_RETURN_IF_ERROR(Expect(l, "data_format", Value::String("channels_last")));
    x.shape = {x.v.size()};
    return Status::Ok();
  }
  if (l.cls == "Activation") {
    std::string fn;
    SAFEMODEL_RETURN_IF_ERROR(GetString(l, "activation", &fn));
    return Activate(l, fn, x);
  }
  return Bad(l, "this layer type is not supported by this example");
}

// The layers in order, checked to form a chain: each layer's only input is
// the previous layer (Functional), or the model is Sequential.
Status ReadLayers(const Value& arch, std::vector<Layer>* layers) {
  const Value* schema = arch.is_map() ? arch.Find("schema") : nullptr;
  if (schema == nullptr || !schema->is_string() || schema->string_value() != "safemodel.keras/1") {
    return Status::Unsupported("the architecture is not a Keras model (schema safemodel.keras/1)");
  }
  const Value* model = arch.Find("model");
  const Value* list = model != nullptr && model->is_map() ? model->Find("layers") : nullptr;
  const Value* cls = model != nullptr && model->is_map() ? model->Find("class_name") : nullptr;
  if (list == nullptr || !list->is_list() || cls == nullptr || !cls->is_string()) {
    return Status::Unsupported("the architecture has no model.layers");
  }
  const bool functional = cls->string_value() == "Functional" || cls->string_value() == "Model";
  if (!functional && cls->string_value() != "Sequential") {
    return Status::Unsupported("model class '" + cls->string_value() + "' is not supported");
  }
  for (const Value& v : list->list()) {
    const Value* c = v.is_map() ? v.Find("class_name") : nullptr;
    const Value* name = v.is_map() ? v.Find("name") : nullptr;
    const Value* config = v.is_map() ? v.Find("config") : nullptr;
    if (c == nullptr || !c->is_string() || name == nullptr || !name->is_string() ||
        config == nullptr || !config->is_map()) {
      return Status::Malformed("a layer without class_name, name or config");
    }
    Layer l{c->string_value(), name->string_value(), config, {}};
    if (const Value* w = v.Find("weights"); w != nullptr && w->is_list()) {
      for (const Value& n : w->list()) {
        if (!n.is_string()) return Bad(l, "a weight name is not a string");
        l.weights.push_back(n.string_value());
      }
    }
    if (functional && !layers->empty()) {
      const Value* nodes = v.Find("inbound_nodes");
      const Value* node = nodes != nullptr && nodes->is_list() && nodes->list().size() == 1
                              ? &nodes->list()[0]
                              : nullptr;
      const Value* inputs = node != nullptr && node->is_map() ? node->Find("inputs") : nullptr;
      const Value* in = inputs != nullptr && inputs->is_list() && inputs->list().size() == 1
                            ? &inputs->list()[0]
                            : nullptr;
      const Value* from = in != nullptr && in->is_map() ? in->Find("layer") : nullptr;
      if (from == nullptr || !from->is_string() || from->string_value() != layers->back().name) {
        return Bad(l, "its input is not the previous layer (only a chain of layers is supported)");
      }
    }
    layers->push_back(std::move(l));
  }
  if (layers->empty()) return Status::Unsupported("the model has no layers");
  return Status::Ok();
}

// The image size the model takes, from its InputLayer: batch_input_shape
// (tf.keras 2) or batch_shape (Keras 3), [null, H, W, C].
Status InputShape(const Layer& l, size_t shape[3]) {
  if (l.cls != "InputLayer") return Bad(l, "the first layer is not an InputLayer");
  const Value* s = l.config->Find("batch_input_shape");
  if (s == nullptr) s = l.config->Find("batch_shape");
  if (s == nullptr || !s->is_list() || s->list().size() != 4)
    return Bad(l, "the input is not [batch, H, W, C]");
  for (size_t i = 0; i < 3; ++i) {
    const Value& d = s->list()[i + 1];
    if (d.kind() != Value::Kind::kInt || d.int_value() < 1 || d.int_value() > 4096) {
      return Bad(l, "an input dimension is not a size");
    }
    shape[i] = static_cast<size_t>(d.int_value());
  }
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  const bool json = argc == 3 && std::string(argv[2]) == "--json";
  if (argc != 2 && !json) {
    std::fprintf(stderr, "usage: %s MODEL.safemodel [--json]\n", argv[0]);
    return 2;
  }
  auto model = Model::Open(argv[1]);
  Status status = model.ok() ? model->Verify() : model.status();
  std::vector<Layer> layers;
  if (status.ok()) status = ReadLayers(model->architecture(), &layers);
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", safemodel::EscapeForDisplay(status.ToString()).c_str());
    return 3;
  }
  size_t shape[3];
  if (status = InputShape(layers[0], shape); !status.ok()) {
    std::fprintf(stderr, "%s\n", safemodel::EscapeForDisplay(status.ToString()).c_str());
    return 3;
  }
  if (json) std::printf("[");
  for (size_t k = 0; k < 2; ++k) {
    Act x{{shape[0], shape[1], shape[2]}, std::vector<float>(shape[0] * shape[1] * shape[2])};
    for (size_t i = 0; i < x.v.size(); ++i) {
      const size_t y = i / (shape[1] * shape[2]), xx = i / shape[2] % shape[1], c = i % shape[2];
      x.v[i] = static_cast<float>((7 * y + 3 * xx + 5 * k + 2 * c) % 11) / 10.0f;
    }
    for (const Layer& l : layers) {
      if (status = Apply(*model, l, x); !status.ok()) {
        std::fprintf(stderr, "%s\n", safemodel::EscapeForDisplay(status.ToString()).c_str());
        return 3;
      }
    }
    if (json) {
      std::printf("%s[", k ? ", " : "");
      for (size_t i = 0; i < x.v.size(); ++i)
        std::printf("%s%.9g", i ? ", " : "", static_cast<double>(x.v[i]));
      std::printf("]");
    } else {
      const size_t best =
          static_cast<size_t>(std::max_element(x.v.begin(), x.v.end()) - x.v.begin());
      std::printf("image %zu: class %zu (p=%.4f); outputs", k, best,
                  static_cast<double>(x.v[best]));
      for (float f : x.v) std::printf(" %.4f", static_cast<double>(f));
      std::printf("\n");
    }
  }
  if (json) std::printf("]\n");
  return 0;
}
