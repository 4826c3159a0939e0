#include "loader/keras_h5/keras_layers.h"

#include <algorithm>
#include <string>

namespace safemodel::loader::keras {

namespace {

bool In(std::string_view s, std::initializer_list<std::string_view> set) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

// Layers with no weights of their own.
constexpr std::string_view kWeightless[] = {
    "InputLayer",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "ThresholdedReLU",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Flatten",
    "Reshape",
    "Permute",
    "RepeatVector",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPool1D",
    "GlobalMaxPool2D",
    "GlobalMaxPool3D",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalAvgPool3D",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Concatenate",
    "Dot",
    "Merge",
    "Masking",
    "Rescaling",
    "CenterCrop",
    "Resizing",
    "UnitNormalization",
    "TFOpLambda",
    "SlicingOpLambda",
    "Hashing",
    "Identity",
};

// Allowed layers whose saved weights depend on details the config does not
// pin down (tf.keras preprocessing layers kept lookup tables or idf weights
// in different ways across versions): weights stay on the layer as stored.
constexpr std::string_view kOtherAllowed[] = {"StringLookup", "IntegerLookup", "TextVectorization"};

// Layers with weights, described by LeafWeightSpec.
constexpr std::string_view kWeighted[] = {
    "Dense",
    "EinsumDense",
    "Embedding",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Convolution1D",
    "Convolution2D",
    "Convolution3D",
    "AtrousConvolution1D",
    "AtrousConvolution2D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "Deconvolution2D",
    "Deconvolution3D",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "SeparableConv1D",
    "SeparableConv2D",
    "SeparableConvolution1D",
    "SeparableConvolution2D",
    "LocallyConnected1D",
    "LocallyConnected2D",
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "Normalization",
    "PReLU",
    "SimpleRNN",
    "LSTM",
    "GRU",
    "CuDNNLSTM",
    "CuDNNGRU",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "MultiHeadAttention",
    "Attention",
    "AdditiveAttention",
};

bool Bool(const Value& config, std::string_view key, bool fallback) {
  const Value* v = config.is_map() ? config.Find(key) : nullptr;
  return v != nullptr && v->kind() == Value::Kind::kBool ? v->bool_value() : fallback;
}

const Value* Field(const Value& config, std::string_view key) {
  return config.is_map() ? config.Find(key) : nullptr;
}

// Keras 1 configs name the bias switch "bias"; later ones "use_bias".
bool UseBias(const Value& config) {
  if (Field(config, "use_bias") != nullptr) return Bool(config, "use_bias", true);
  return Bool(config, "bias", true);
}

std::vector<bool> Trainable(size_t n) { return std::vector<bool>(n, true); }

}  // namespace

LayerKind ClassifyLayer(std::string_view c) {
  if (In(c, {"Sequential", "Functional", "Model"})) return LayerKind::kModel;
  if (In(c, {"TimeDistributed", "Bidirectional"})) return LayerKind::kWrapper;
  for (std::string_view w : kWeightless) {
    if (c == w) return LayerKind::kLeaf;
  }
  for (std::string_view w : kWeighted) {
    if (c == w) return LayerKind::kLeaf;
  }
  for (std::string_view w : kOtherAllowed) {
    if (c == w) return LayerKind::kLeaf;
  }
  return LayerKind::kNotAllowed;
}

bool IsAllowedAuxiliaryClass(std::string_view c) {
  return In(c, {
                   // Initializers (Keras 2/3 and tf.keras spellings).
                   "Zeros",
                   "Ones",
                   "Constant",
                   "RandomNormal",
                   "RandomUniform",
                   "TruncatedNormal",
                   "VarianceScaling",
                   "GlorotUniform",
                   "GlorotNormal",
                   "HeUniform",
                   "HeNormal",
                   "LecunUniform",
                   "LecunNormal",
                   "Orthogonal",
                   "Identity",
                   "IdentityInitializer",
                   "zeros",
                   "ones",
                   "constant",
                   "random_normal",
                   "random_uniform",
                   "truncated_normal",
                   "glorot_uniform",
                   "glorot_normal",
                   "he_uniform",
                   "he_normal",
                   "lecun_uniform",
                   "lecun_normal",
                   "orthogonal",
                   "identity",
                   // Regularizers and constraints.
                   "L1L2",
                   "L1",
                   "L2",
                   "OrthogonalRegularizer",
                   "L1L2Regularizer",
                   "MaxNorm",
                   "NonNeg",
                   "UnitNorm",
                   "MinMaxNorm",
                   "RadialConstraint",
                   // Dtype policies.
                   "DTypePolicy",
                   "FloatDTypePolicy",
                   "Policy",
                   "PolicyV1",
                   // Keras 3 literals (data, not code).
                   "__keras_tensor__",
                   "__tensor__",
                   "__numpy__",
                   "__bytes__",
                   "__slice__",
                   "__ellipsis__",
                   // tf.keras json_utils markers: a tuple, a TensorShape.
                   "__tuple__",
                   "TensorShape",
               });
}

bool IsBuiltinActivation(std::string_view n) {
  return In(n, {"linear",      "relu",          "relu6",      "elu",         "selu",
                "sigmoid",     "hard_sigmoid",  "tanh",       "softmax",     "softplus",
                "softsign",    "swish",         "silu",       "gelu",        "exponential",
                "leaky_relu",  "log_softmax",   "mish",       "hard_swish",  "hard_silu",
                "celu",        "glu",           "hard_tanh",  "hard_shrink", "log_sigmoid",
                "sparse_plus", "soft_shrink",   "squareplus", "tanh_shrink", "threshold",
                "sparsemax",   "sparse_sigmoid"});
}

bool IsAllowedTfOp(std::string_view f) {
  return In(f, {"math.add",
                "math.subtract",
                "math.multiply",
                "math.truediv",
                "math.divide",
                "math.negative",
                "math.abs",
                "math.sqrt",
                "math.square",
                "math.exp",
                "math.log",
                "math.pow",
                "math.maximum",
                "math.minimum",
                "math.reduce_mean",
                "math.reduce_sum",
                "math.reduce_max",
                "math.reduce_min",
                "math.sigmoid",
                "math.tanh",
                "math.softplus",
                "nn.relu",
                "nn.relu6",
                "nn.softmax",
                "nn.sigmoid",
                "nn.tanh",
                "nn.gelu",
                "nn.silu",
                "nn.swish",
                "nn.l2_normalize",
                "reshape",
                "expand_dims",
                "squeeze",
                "concat",
                "stack",
                "transpose",
                "cast",
                "identity",
                "clip_by_value",
                "linalg.matmul",
                "matmul",
                "__operators__.add",
                "__operators__.getitem",
                "compat.v1.transpose",
                "compat.v1.squeeze"});
}

bool IsKerasModule(std::string_view m) {
  for (std::string_view root : {"keras", "tf_keras"}) {
    if (m == root) return true;
    if (m.size() > root.size() && m.substr(0, root.size()) == root && m[root.size()] == '.') {
      return true;
    }
  }
  return false;
}

bool IsQuantizedPolicy(std::string_view c) {
  if (In(c, {"DTypePolicy", "FloatDTypePolicy", "Policy", "PolicyV1"})) return false;
  return c.find("DTypePolicy") != std::string_view::npos || c.find("Quantized") != std::string_view::npos;
}

bool IsQuantizedPolicyName(std::string_view name) {
  return name.find("_from_") != std::string_view::npos;
}

bool IsNumericDtypeName(std::string_view n) {
  return In(n, {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float16", "float32", "float64", "bfloat16", "complex64", "complex128"});
}

bool IsBuiltinCompileClass(std::string_view c) {
  return In(c, {// Optimizers (Keras 3, tf.keras, legacy) and their wrappers.
                "Adam", "AdamW", "Adamax", "Adagrad", "Adadelta", "Adafactor", "Ftrl", "Lion",
                "Nadam", "RMSprop", "SGD", "Lamb", "Muon", "LossScaleOptimizer",
                "LossScaleOptimizerV3", "DynamicLossScale", "FixedLossScale",
                // Learning-rate schedules.
                "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
                "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts",
                // Losses.
                "BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy",
                "CategoricalFocalCrossentropy", "SparseCategoricalCrossentropy",
                "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
                "MeanSquaredLogarithmicError", "Huber", "LogCosh", "Hinge", "SquaredHinge",
                "CategoricalHinge", "KLDivergence", "Poisson", "CosineSimilarity", "Dice",
                "Tversky", "CTC", "Circle", "LossFunctionWrapper",
                // Metrics.
                "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
                "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "AUC", "Precision",
                "Recall", "PrecisionAtRecall", "RecallAtPrecision", "SensitivityAtSpecificity",
                "SpecificityAtSensitivity", "TruePositives", "TrueNegatives", "FalsePositives",
                "FalseNegatives", "Mean", "Sum", "MeanMetricWrapper", "MeanIoU", "IoU",
                "BinaryIoU", "OneHotIoU", "OneHotMeanIoU", "RootMeanSquaredError", "R2Score",
                "F1Score", "FBetaScore", "LogCoshError", "CategoricalCrossentropyMetric"});
}

bool IsBuiltinLossOrMetricName(std::string_view n) {
  return In(n, {"accuracy", "acc", "binary_accuracy", "categorical_accuracy",
                "sparse_categorical_accuracy", "top_k_categorical_accuracy",
                "sparse_top_k_categorical_accuracy", "crossentropy", "ce", "bce",
                "binary_crossentropy", "categorical_crossentropy",
                "sparse_categorical_crossentropy", "binary_focal_crossentropy",
                "categorical_focal_crossentropy", "mean_squared_error", "mse",
                "mean_absolute_error", "mae", "mean_absolute_percentage_error", "mape",
                "mean_squared_logarithmic_error", "msle", "huber", "huber_loss", "log_cosh",
                "logcosh", "hinge", "squared_hinge", "categorical_hinge",
                "kl_divergence", "kld", "kullback_leibler_divergence", "poisson",
                "cosine_similarity", "auc", "precision", "recall", "root_mean_squared_error",
                "r2_score", "dice", "tversky", "ctc", "adam", "adamw", "adamax", "adagrad",
                "adadelta", "adafactor", "ftrl", "lion", "nadam", "rmsprop", "sgd"});
}

std::optional<std::vector<bool>> LeafWeightSpec(std::string_view c, const Value& config) {
  for (std::string_view w : kWeightless) {
    if (c == w) return std::vector<bool>();
  }
  if (In(c, {"Dense", "Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D",
             "Convolution3D", "AtrousConvolution1D", "AtrousConvolution2D", "Conv1DTranspose",
             "Conv2DTranspose", "Conv3DTranspose", "Deconvolution2D", "Deconvolution3D",
             "DepthwiseConv1D", "DepthwiseConv2D", "LocallyConnected1D", "LocallyConnected2D"})) {
    const Value* quantization = Field(config, "quantization_config");
    if (quantization != nullptr && !quantization->is_null()) return std::nullopt;
    return Trainable(UseBias(config) ? 2 : 1);
  }
  if (In(c, {"SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D",
             "SeparableConvolution2D"})) {
    return Trainable(UseBias(config) ? 3 : 2);
  }
  if (c == "EinsumDense") {
    const Value* axes = Field(config, "bias_axes");
    return Trainable(axes != nullptr && !axes->is_null() ? 2 : 1);
  }
  if (c == "Embedding" || c == "PReLU") return Trainable(1);
  if (c == "BatchNormalization") {
    if (Bool(config, "renorm", false)) return std::nullopt;
    std::vector<bool> spec;
    if (Bool(config, "scale", true)) spec.push_back(true);
    if (Bool(config, "center", true)) spec.push_back(true);
    spec.push_back(false);  // moving_mean (Keras 1: running_mean)
    spec.push_back(false);  // moving_variance (Keras 1: running_std)
    return spec;
  }
  if (c == "LayerNormalization" || c == "GroupNormalization") {
    return Trainable((Bool(config, "scale", true) ? 1u : 0u) +
                     (Bool(config, "center", true) ? 1u : 0u));
  }
  if (c == "Normalization") return std::vector<bool>{false, false, false};  // mean, variance, count
  if (In(c, {"SimpleRNN", "LSTM", "GRU"})) {
    // Keras 1 recurrent layers keep one kernel, recurrent kernel and bias
    // per gate; they are recognisable by their U_regularizer key.
    if (Field(config, "U_regularizer") != nullptr) {
      return Trainable(c == "LSTM" ? 12 : c == "GRU" ? 9 : 3);
    }
    return Trainable(UseBias(config) ? 3 : 2);
  }
  if (In(c, {"CuDNNLSTM", "CuDNNGRU"})) return Trainable(3);
  if (In(c, {"ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"})) return Trainable(UseBias(config) ? 3 : 2);
  if (c == "MultiHeadAttention") return Trainable(UseBias(config) ? 8 : 4);
  if (c == "Attention" || c == "AdditiveAttention") {
    size_t n = Bool(config, "use_scale", false) ? 1 : 0;
    const Value* mode = Field(config, "score_mode");
    if (mode != nullptr && mode->is_string() && mode->string_value() == "concat") ++n;
    return Trainable(n);
  }
  return std::nullopt;
}

}  // namespace safemodel::loader::keras
