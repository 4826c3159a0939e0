// safetensors export (safemodel/safetensors.h, safemodel/export_safetensors.h,
// `safe-convert export`): the file's layout rule by rule, every dtype,
// aliases, determinism, refusals, the round trip safemodel -> safetensors ->
// safemodel through the sandbox, and an independent Python reader
// (examples/safetensors/read_safetensors.py).
#include "safemodel/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "proto/digest.h"
#include "proto/wire/wire.h"
#include "proto/writer.h"
#include "safemodel/export_safetensors.h"
#include "safemodel/reader.h"
#include "tests/testing/model_writer.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

using Spec = ModelSpec;

// Every dtype safetensors can express, an empty tensor, a scalar and a tied
// weight.
std::vector<Spec> AllDTypes() {
  std::vector<Spec> specs;
  for (uint32_t raw = 1; raw <= kMaxDType; ++raw) {
    const auto d = static_cast<DType>(raw);
    if (d == DType::kC128) continue;
    specs.push_back({"t_" + std::string(DTypeName(d)), d, {2, 3}, ""});
  }
  specs.push_back({"empty", DType::kF32, {0, 4}, ""});
  specs.push_back({"scalar", DType::kF64, {}, ""});
  specs.push_back({"tied", DType::kF32, {2, 3}, "t_f32"});
  std::sort(specs.begin(), specs.end(), [](const Spec& a, const Spec& b) { return a.name < b.name; });
  return specs;
}

// A valid .safemodel written by the format's writer; tensor bytes are a
// pattern (0/1 for bool).
std::string WriteModel(const std::string& path, const std::vector<Spec>& specs,
                       const std::string& source_format) {
  uint32_t seed = 0;
  return WriteModelFile(path, specs, source_format, [&](size_t t, uint64_t size) {
    ++seed;
    const bool is_bool = specs[t].dtype == DType::kBool;
    std::string bytes(size, '\0');
    for (size_t i = 0; i < bytes.size(); ++i) {
      bytes[i] = static_cast<char>(is_bool ? (i + seed) % 2 : (i * 131 + seed * 7) & 0xff);
    }
    return bytes;
  });
}

std::string Export(const Model& m) {
  std::string out;
  Status s = WriteSafetensors(m, [&](std::span<const std::byte> b) {
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    return Status::Ok();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

uint64_t Length(const std::string& file) {
  uint64_t n = 0;
  for (size_t i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(file[i])) << (8 * i);
  return n;
}

std::string Bytes(const Model& m, const TensorInfo& t) {
  auto d = m.Data(t);
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

TEST(SafetensorsExport, WritesTheLayoutTheFormatPrescribes) {
  TempDir dir;
  WriteModel(dir.File("m.safemodel"), AllDTypes(), "pytorch");
  auto m = Model::Open(dir.File("m.safemodel"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const std::string file = Export(*m);
  const uint64_t n = Length(file);
  ASSERT_LE(8 + n, file.size());
  EXPECT_EQ(n % 8, 0u) << "header padded to a multiple of 8";
  EXPECT_EQ(file[8], '{');
  const std::string text = file.substr(8, n);
  EXPECT_EQ(text.find_last_not_of(' ') + 1, text.find_last_of('}') + 1) << "padding is spaces";
  // An ordered parse keeps the header's key order.
  auto header = nlohmann::ordered_json::parse(text);
  ASSERT_TRUE(header.is_object());
  ASSERT_EQ(header.begin().key(), "__metadata__");
  const auto& meta = header["__metadata__"];
  for (const auto& [k, v] : meta.items()) EXPECT_TRUE(v.is_string()) << k;
  EXPECT_EQ(meta["format"], "pt");
  EXPECT_EQ(meta["tied"], "t_f32") << "an alias is recorded as removed-name -> kept-name";
  EXPECT_EQ(meta["safemodel.source_format"], "pytorch");
  EXPECT_FALSE(header.contains("tied")) << "an alias is written once";
  uint64_t at = 0, last_size = 16;
  std::string last_name;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    ASSERT_EQ(info.size(), 3u) << name;
    const TensorInfo* t = m->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(info["shape"].get<std::vector<uint64_t>>(), t->shape) << name;
    const auto offsets = info["data_offsets"].get<std::vector<uint64_t>>();
    ASSERT_EQ(offsets.size(), 2u);
    EXPECT_EQ(offsets[0], at) << name << ": contiguous";
    EXPECT_EQ(offsets[1] - offsets[0], t->nbytes) << name;
    EXPECT_EQ(file.substr(8 + n + offsets[0], t->nbytes), Bytes(*m, *t)) << name;
    EXPECT_EQ((8 + n + offsets[0]) % DTypeSize(t->dtype), 0u) << name << ": aligned";
    const uint64_t size = DTypeSize(t->dtype);
    EXPECT_TRUE(size < last_size || (size == last_size && name > last_name)) << name << ": order";
    last_size = size;
    last_name = name;
    at = offsets[1];
  }
  EXPECT_EQ(8 + n + at, file.size()) << "the offsets cover the buffer exactly";
  EXPECT_EQ(Export(*m), file) << "deterministic";
}

TEST(SafetensorsExport, NamesEveryDtypeAsTheFormatDoes) {
  const std::map<DType, std::string> want = {
      {DType::kBool, "BOOL"}, {DType::kU8, "U8"},       {DType::kI8, "I8"},
      {DType::kU16, "U16"},   {DType::kI16, "I16"},     {DType::kU32, "U32"},
      {DType::kI32, "I32"},   {DType::kU64, "U64"},     {DType::kI64, "I64"},
      {DType::kF16, "F16"},   {DType::kBF16, "BF16"},   {DType::kF32, "F32"},
      {DType::kF64, "F64"},   {DType::kC64, "C64"},     {DType::kF8E4M3FN, "F8_E4M3"},
      {DType::kF8E5M2, "F8_E5M2"}, {DType::kF8E4M3FNUZ, "F8_E4M3FNUZ"},
      {DType::kF8E5M2FNUZ, "F8_E5M2FNUZ"}, {DType::kF8E8M0FNU, "F8_E8M0"}};
  TempDir dir;
  WriteModel(dir.File("m.safemodel"), AllDTypes(), "npz");
  auto m = Model::Open(dir.File("m.safemodel"));
  ASSERT_TRUE(m.ok());
  const std::string file = Export(*m);
  auto header = nlohmann::json::parse(file.substr(8, Length(file)));
  EXPECT_FALSE(header["__metadata__"].contains("format")) << "npz names no framework";
  for (const auto& [dtype, name] : want) {
    EXPECT_EQ(header["t_" + std::string(DTypeName(dtype))]["dtype"], name);
  }
}

TEST(SafetensorsExport, RefusesWhatSafetensorsCannotExpressAndUnverifiedFiles) {
  TempDir dir;
  WriteModel(dir.File("c.safemodel"), {{"z", DType::kC128, {2}, ""}}, "npy");
  auto c = Model::Open(dir.File("c.safemodel"));
  ASSERT_TRUE(c.ok());
  auto plan = PlanSafetensors(*c);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(plan.status().message().find("tensor 'z' has dtype c128"), std::string::npos);
  // A changed tensor byte: the digest fails and nothing reaches the sink.
  std::string bytes = WriteModel(dir.File("m.safemodel"), AllDTypes(), "npz");
  auto good = Model::Open(dir.File("m.safemodel"));
  ASSERT_TRUE(good.ok());
  bytes[good->Find("t_f32")->offset] ^= 1;
  auto bad = Model::FromBuffer(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
  ASSERT_TRUE(bad.ok()) << "opening does not read tensor bytes";
  uint64_t sunk = 0;
  Status s = WriteSafetensors(*bad, [&](std::span<const std::byte> b) {
    sunk += b.size();
    return Status::Ok();
  });
  EXPECT_EQ(s.code(), StatusCode::kMalformed) << s.ToString();
  EXPECT_EQ(sunk, 0u);
}

// safemodel -> safetensors -> safemodel (the real sandboxed conversion):
// every tensor comes back with the same dtype, shape, bytes and digest.
TEST(SafetensorsExport, RoundTripKeepsEveryTensorAndDigest) {
  TempDir dir;
  WriteModel(dir.File("m.safemodel"), AllDTypes(), "pytorch");
  auto done = ExportSafetensorsFile(dir.File("m.safemodel"), dir.File("m.safetensors"),
                                    {.force = false, .sync = false});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->aliases, 1u);
  ConvertReport r = Convert(dir.File("m.safetensors"), dir.File("back.safemodel"));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  auto a = Model::Open(dir.File("m.safemodel"));
  auto b = Model::Open(dir.File("back.safemodel"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(b->Verify().ok());
  EXPECT_EQ(b->tensors().size() + 1, a->tensors().size()) << "all but the alias";
  for (const TensorInfo& t : a->tensors()) {
    const TensorInfo* u = b->Find(t.name);
    if (!t.alias_of.empty()) {
      EXPECT_EQ(u, nullptr);
      continue;
    }
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(u->dtype, t.dtype) << t.name;
    EXPECT_EQ(u->shape, t.shape) << t.name;
    EXPECT_EQ(u->digest, t.digest) << t.name;
    EXPECT_EQ(Bytes(*b, *u), Bytes(*a, t)) << t.name;
  }
  const Value* meta = b->metadata().Find("safetensors_metadata");
  ASSERT_NE(meta, nullptr);
  EXPECT_EQ(meta->Find("tied")->string_value(), "t_f32");
}

TEST(SafetensorsExport, AnIndependentPythonReaderAgrees) {
  if (!PythonHas({"numpy"})) GTEST_SKIP() << "needs /usr/bin/python3 with numpy";
  TempDir dir;
  WriteModel(dir.File("m.safemodel"), AllDTypes(), "pytorch");
  ASSERT_TRUE(ExportSafetensorsFile(dir.File("m.safemodel"), dir.File("m.safetensors"),
                                    {.force = false, .sync = false})
                  .ok());
  std::string out;
  ASSERT_EQ(RunPython(std::string(SAFEMODEL_SOURCE_DIR) + "/examples/safetensors/read_safetensors.py",
                      {dir.File("m.safetensors")}, &out),
            0)
      << out;
  auto got = nlohmann::json::parse(out);
  auto m = Model::Open(dir.File("m.safemodel"));
  ASSERT_TRUE(m.ok());
  size_t seen = 0;
  for (const TensorInfo& t : m->tensors()) {
    if (!t.alias_of.empty()) continue;
    ASSERT_TRUE(got.contains(t.name)) << t.name;
    const auto d = m->Data(t);
    EXPECT_EQ(got[t.name]["sha256"],
              ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(d.data()), d.size()))))
        << t.name;
    EXPECT_EQ(got[t.name]["shape"].get<std::vector<uint64_t>>(), t.shape) << t.name;
    ++seen;
  }
  EXPECT_EQ(got.size(), seen + 1) << "every tensor and __metadata__";
}

TEST(SafetensorsExport, TheCommandKeepsTheOutputRules) {
  TempDir dir;
  WriteModel(dir.File("m.safemodel"), AllDTypes(), "npz");
  const std::string cli = BinDir() + "/safe-convert export ";
  std::string out;
  EXPECT_EQ(RunCommand(cli + dir.File("m.safemodel") + " " + dir.File("o.safetensors"), &out), 0)
      << out;
  const std::string first = ReadFile(dir.File("o.safetensors"));
  EXPECT_EQ(first.substr(8, 16), "{\"__metadata__\":");
  WriteFile(dir.File("o.safetensors"), "keep me");
  EXPECT_EQ(RunCommand(cli + dir.File("m.safemodel") + " " + dir.File("o.safetensors"), &out), 2)
      << "never clobber without --force";
  EXPECT_EQ(ReadFile(dir.File("o.safetensors")), "keep me");
  EXPECT_EQ(RunCommand(cli + "--force " + dir.File("m.safemodel") + " " + dir.File("o.safetensors"),
                       &out),
            0)
      << out;
  EXPECT_EQ(ReadFile(dir.File("o.safetensors")), first) << "same model, same bytes";
  ASSERT_EQ(symlink(dir.File("elsewhere").c_str(), dir.File("link.safetensors").c_str()), 0);
  EXPECT_EQ(RunCommand(cli + "--force " + dir.File("m.safemodel") + " " + dir.File("link.safetensors"),
                       &out),
            2)
      << "only a regular file is replaced";
  EXPECT_FALSE(Exists(dir.File("elsewhere")));
  EXPECT_EQ(RunCommand(cli + dir.File("m.safemodel") + " " + dir.File("m.safemodel"), &out), 2)
      << "OUT may not be the input";
  WriteModel(dir.File("c.safemodel"), {{"z", DType::kC128, {2}, ""}}, "npy");
  EXPECT_EQ(RunCommand(cli + dir.File("c.safemodel") + " " + dir.File("c.safetensors"), &out), 3)
      << out;
  EXPECT_NE(out.find("c128"), std::string::npos) << out;
  EXPECT_FALSE(Exists(dir.File("c.safetensors")));
  WriteFile(dir.File("bad.safemodel"), "not a safemodel");
  EXPECT_EQ(RunCommand(cli + dir.File("bad.safemodel") + " " + dir.File("b.safetensors"), &out), 3)
      << out;
  EXPECT_FALSE(Exists(dir.File("b.safetensors")));
}

}  // namespace
}  // namespace safemodel::testing
