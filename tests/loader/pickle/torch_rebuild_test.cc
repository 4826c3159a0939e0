// Issue 16, torch side: rebuild arguments type-checked as torch checks them
// (torch/_utils.py: `tensor.requires_grad = x`, Parameter's _make_subclass,
// Tensor.set_). Each crafted legacy checkpoint is also given to torch.load
// in a throwaway process, when torch is installed, to show that torch
// refuses exactly what is refused here.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/loader/pickle/pickle_bytes.h"
#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

const std::string kTrue = B({0x88});
const std::string kFalse = B({0x89});
const std::string kHooks = Global("collections", "OrderedDict") + ")R";

// _rebuild_tensor_v2 over a legacy storage of 2 elements of `storage_type`.
std::string TensorV2(const std::string& storage_type, const std::string& offset,
                     const std::string& requires_grad) {
  return Global("torch._utils", "_rebuild_tensor_v2") + "((" + Str("storage") +
         Global("torch", storage_type) + Str("k") + Str("cpu") + Int1(2) + "NtQ" + offset + "(" +
         Int1(2) + "t(" + Int1(1) + "t" + requires_grad + kHooks + "tR";
}

std::string Parameter(const std::string& tensor, const std::string& requires_grad) {
  return Global("torch._utils", "_rebuild_parameter") + "(" + tensor + requires_grad + kHooks +
         "tR";
}

// A legacy torch.save stream holding {'w': value} over storage 'k' (2
// elements of `element_bytes` each).
std::string Legacy(const std::string& value, int element_bytes) {
  const std::string magic =
      P2(B({0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}));
  const std::string version = P2("M" + LE(1001, 2));
  const std::string sys_info = P2("}(X" + LE(13, 4) + "little_endian" + kTrue + "u");
  return magic + version + sys_info + P2("}(X" + LE(1, 4) + "w" + value + "u") +
         P2("](" + Str("k") + "e") + LE(2, 8) +
         std::string(static_cast<size_t>(2 * element_bytes), '\x01');
}

// torch.load's verdict on each file, in one throwaway process: "0" loaded,
// "1" raised, per file; "" without torch.
std::string TorchVerdicts(const std::vector<std::string>& files, const TempDir& dir) {
  if (!PythonHas({"torch"})) return "";
  std::string paths;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string path = dir.File("probe" + std::to_string(i) + ".pt");
    WriteFile(path, files[i]);
    paths += " " + path;
  }
  std::string out;
  RunCommand(
      "/usr/bin/python3 -c 'import sys, torch\nfor p in sys.argv[1:]:\n try:\n  torch.load(p)\n"
      "  print(0, end=\"\")\n except Exception:\n  print(1, end=\"\")' " +
          paths,
      &out, false);
  return out;
}

struct Case {
  const char* what;
  std::string file;
  const char* message;  // "" = converts
};

TEST(TorchRebuild, Issue16RequiresGradAndOffsetAreTypeCheckedAsTorchDoes) {
  const std::string f4 = "FloatStorage", i2 = "ShortStorage";
  const Case cases[] = {
      {"float, requires_grad=True", Legacy(TensorV2(f4, Int1(0), kTrue), 4), ""},
      {"int, requires_grad=False", Legacy(TensorV2(i2, Int1(0), kFalse), 2), ""},
      {"requires_grad=1", Legacy(TensorV2(f4, Int1(0), Int1(1)), 4),
       "torch._utils._rebuild_tensor_v2: requires_grad must be a bool, not an int"},
      {"requires_grad=None", Legacy(TensorV2(f4, Int1(0), "N"), 4),
       "requires_grad must be a bool, not None"},
      {"int, requires_grad=True", Legacy(TensorV2(i2, Int1(0), kTrue), 2),
       "requires_grad=True on a i16 tensor"},
      {"offset=False", Legacy(TensorV2(f4, kFalse, kFalse), 4),
       "storage offset must be an int, not a bool"},
      {"parameter, requires_grad=True", Legacy(Parameter(TensorV2(f4, Int1(0), kFalse), kTrue), 4),
       ""},
      {"parameter, requires_grad=1", Legacy(Parameter(TensorV2(f4, Int1(0), kFalse), Int1(1)), 4),
       "torch._utils._rebuild_parameter: requires_grad must be a bool, not an int"},
      {"int parameter, requires_grad=True",
       Legacy(Parameter(TensorV2(i2, Int1(0), kFalse), kTrue), 2),
       "requires_grad=True on a i16 tensor"},
  };
  TempDir dir;
  std::vector<std::string> files;
  for (const Case& c : cases) files.push_back(c.file);
  const std::string torch = TorchVerdicts(files, dir);
  if (!torch.empty()) {
    ASSERT_EQ(torch.size(), files.size()) << torch;
  }
  for (size_t i = 0; i < files.size(); ++i) {
    const Case& c = cases[i];
    InProcessResult r = ParseInProcess(c.file);
    const bool converts = c.message[0] == '\0';
    if (!torch.empty()) {
      EXPECT_EQ(torch[i], converts ? '0' : '1') << c.what << ": torch disagrees";
    }
    if (converts) {
      EXPECT_TRUE(r.status.ok()) << c.what << ": " << r.status.ToString();
      continue;
    }
    EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << c.what << ": " << r.status.ToString();
    EXPECT_NE(r.status.message().find(c.message), std::string::npos)
        << c.what << ": " << r.status.message();
  }
}

// A size torch accepts when a dimension is 0, but whose other dimensions
// times the element size overflow int64: malformed (exit 3) in the worker,
// like every parser's shapes, not an invalid worker result (exit 5).
TEST(TorchRebuild, Issue16ShapeOverflowingInt64IsMalformedEvenWhenEmpty) {
  const std::string big = B({0x8a, 8}) + LE(uint64_t{1} << 62, 8);  // LONG1 2**62
  const std::string tensor = Global("torch._utils", "_rebuild_tensor_v2") + "((" + Str("storage") +
                             Global("torch", "FloatStorage") + Str("k") + Str("cpu") + Int1(2) +
                             "NtQ" + Int1(0) + "(" + Int1(0) + big + "t(" + Int1(1) + Int1(1) +
                             "t" + kFalse + kHooks + "tR";
  const std::string file = Legacy(tensor, 4);
  InProcessResult r = ParseInProcess(file);
  EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << r.status.ToString();
  TempDir dir;
  WriteFile(dir.File("big.pt"), file);
  ConvertReport report = Convert(dir.File("big.pt"), dir.File("out.safemodel"));
  EXPECT_EQ(ExitCodeFor(report.status.code()), 3) << report.status.ToString();
  EXPECT_NE(report.status.message().find("byte size overflows signed 64 bits"), std::string::npos)
      << report.status.message();
}

}  // namespace
}  // namespace safemodel::testing
