// The strict HDF5 walk and attribute reader, in process, on h5py fixtures.
#include "loader/keras_h5/h5_file.h"

#include <H5PLpublic.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"

#include "loader/keras_h5/keras_h5.h"

namespace safemodel::loader::h5 {
namespace {

class H5FileTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_TRUE(PrepareHdf5().ok()); }

  // Opens a fixture; the image stays alive with the test.
  Result<std::shared_ptr<File>> Open(const std::string& name) {
    image_ = testing::ReadFile(testing::Fixture("keras_h5/" + name));
    return File::Open(AsBytes(image_), ctx_);
  }
  std::vector<std::string> RefusalRules() const {
    std::vector<std::string> out;
    for (const Finding& f : ctx_.findings()) {
      if (f.severity == Finding::Severity::kRefused) out.push_back(f.rule);
    }
    return out;
  }

  // Before opening `input`'s map as the worker would: none of it mapped, and
  // ctx_ with the map as the droppable one or not.
  void PrepareMapped(const testing::MappedFile& input, bool droppable) {
    input.Drop();
    ParseOptions options;
    if (droppable) options.droppable_map = input.view();
    ctx_ = ParseContext(options);
  }

  std::string image_;
  ParseContext ctx_{ParseOptions{}};
};

// libhdf5 finds plugins, external files and drivers through these
// variables and loads filter plugins on demand: PrepareHdf5 clears the first
// and switches the second off (the walk refuses plugin filters before any
// read; this is the layer beneath).
TEST(PrepareHdf5, ClearsHdf5EnvironmentAndDisablesPlugins) {
  for (const char* var : {"HDF5_PLUGIN_PATH", "HDF5_PLUGIN_PRELOAD", "HDF5_EXT_PREFIX",
                          "HDF5_VDS_PREFIX", "HDF5_EXTFILE_PREFIX", "HDF5_DRIVER",
                          "HDF5_VOL_CONNECTOR"}) {
    ASSERT_EQ(setenv(var, "/tmp/evil", 1), 0);
  }
  ASSERT_GE(H5PLset_loading_state(H5PL_ALL_PLUGIN), 0);
  ASSERT_TRUE(PrepareHdf5().ok());
  for (const char* var : {"HDF5_PLUGIN_PATH", "HDF5_PLUGIN_PRELOAD", "HDF5_EXT_PREFIX",
                          "HDF5_VDS_PREFIX", "HDF5_EXTFILE_PREFIX", "HDF5_DRIVER",
                          "HDF5_VOL_CONNECTOR"}) {
    EXPECT_EQ(getenv(var), nullptr) << var;
  }
  unsigned int state = 1;
  ASSERT_GE(H5PLget_loading_state(&state), 0);
  EXPECT_EQ(state, 0u) << "filter plugins can still be loaded";
}

TEST_F(H5FileTest, WalksEveryObjectByPath) {
  auto file = Open("functional_graph.h5");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const File& f = **file;
  EXPECT_EQ(f.root().path, "/");
  const Node* kernel = f.Find("/model_weights/tower_a/tower_a/kernel:0");
  ASSERT_NE(kernel, nullptr);
  EXPECT_EQ(kernel->kind, Node::Kind::kDataset);
  EXPECT_EQ(kernel->dataset.dtype, DType::kF32);
  EXPECT_EQ(kernel->dataset.shape, (std::vector<uint64_t>{4, 6}));
  EXPECT_TRUE(kernel->dataset.in_place);
  auto resolved = f.Resolve(*f.Find("/model_weights/tower_a"), "tower_a/kernel:0");
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(*resolved, kernel);
  EXPECT_EQ(f.Resolve(f.root(), "model_weights/../x").status().code(), StatusCode::kMalformed);
  EXPECT_EQ(*f.Resolve(f.root(), "missing/path"), nullptr);
}

// Inside a droppable input map (the worker's), the walk's reads go through
// a MapResidency (loader/map_residency.h) and leave no page of the map
// mapped once it is over; the file still reads the same afterwards (its
// pages fault back). Outside one (the control), the pages read stay mapped.
TEST_F(H5FileTest, ADroppableInputMapIsLeftUnmappedAfterTheWalk) {
  const testing::MappedFile input(testing::ReadFile(testing::Fixture("keras_h5/functional_graph.h5")));
  ASSERT_TRUE(input.ok());
  const ByteView map = input.view();
  if (testing::MappedHere(map.data()) == -1) GTEST_SKIP() << "no /proc/self/pagemap";
  for (const bool droppable : {false, true}) {
    SCOPED_TRACE(droppable);
    PrepareMapped(input, droppable);
    auto file = File::Open(map, ctx_);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    EXPECT_EQ(testing::MappedHere(map.data()), droppable ? 0 : 1) << "the superblock's page";
    const Node* kernel = (*file)->Find("/model_weights/tower_a/tower_a/kernel:0");
    ASSERT_NE(kernel, nullptr);
    EXPECT_EQ(kernel->dataset.shape, (std::vector<uint64_t>{4, 6}));
  }
}

// While the walk runs, not only after it: libhdf5 reads every object header
// through the driver, and an object header sits beside its dataset's data,
// all over the file (2,000 datasets of 30 KiB: 60 MB). Inside a droppable
// map the driver's reads keep a few blocks mapped (map_residency.h); outside
// one (the control) most of the file ends up mapped. Measured as the growth
// of this process's peak resident size, reset before.
TEST_F(H5FileTest, TheWalksReadsKeepFewPagesOfADroppableMapMapped) {
#if defined(SAFEMODEL_SANITIZER_BUILD)
  // The peak counts all memory, and a sanitizer's shadow and quarantine grow
  // by tens of MiB over one walk (45 MB here under ASan, 3 MB without).
  GTEST_SKIP() << "the peak resident size is the sanitizer's here";
#endif
  const testing::TempDir dir;
  const std::string path = dir.File("many.h5");
  {
    const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    const hsize_t dims[1] = {30 << 10};
    const hid_t space = H5Screate_simple(1, dims, nullptr);
    const std::string bytes(30 << 10, 'd');
    for (int i = 0; i < 2000; ++i) {
      const std::string name = "d" + std::to_string(i);
      const hid_t set = H5Dcreate2(file, name.c_str(), H5T_NATIVE_UCHAR, space, H5P_DEFAULT, H5P_DEFAULT,
                                   H5P_DEFAULT);
      ASSERT_GE(set, 0);
      ASSERT_GE(H5Dwrite(set, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), 0);
      H5Dclose(set);
    }
    H5Sclose(space);
    H5Fclose(file);
  }
  const testing::MappedFile input(testing::ReadFile(path));
  ASSERT_TRUE(input.ok());
  const ByteView map = input.view();
  const size_t size = map.size();
  if (!testing::ResetPeakRss()) GTEST_SKIP() << "no /proc/self/clear_refs";
  for (const bool droppable : {false, true}) {
    SCOPED_TRACE(droppable);
    PrepareMapped(input, droppable);
    ASSERT_TRUE(testing::ResetPeakRss());
    const uint64_t before = testing::PeakRssBytes();
    auto file = File::Open(map, ctx_);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    const uint64_t grown = testing::PeakRssBytes() - before;
    ASSERT_NE((*file)->Find("/d1999"), nullptr);
    if (droppable) {
      EXPECT_LE(grown, uint64_t{12} << 20) << grown << " bytes";  // 3 MB here
    } else {
      EXPECT_GE(grown, size / 4) << grown << " bytes";  // the control: 26 MB here
    }
  }
}

TEST_F(H5FileTest, ReadsStringAttributesInEveryEncoding) {
  for (const char* name : {"strings_fixed.h5", "strings_nullterm.h5", "strings_spacepad.h5",
                           "strings_vlen_ascii.h5", "strings_vlen_utf8.h5"}) {
    auto file = Open(name);
    ASSERT_TRUE(file.ok()) << name << ": " << file.status().ToString();
    auto layers = (*file)->ReadChunkedStrings((*file)->root(), "layer_names");
    ASSERT_TRUE(layers.ok()) << name << ": " << layers.status().ToString();
    ASSERT_TRUE(layers->has_value());
    EXPECT_EQ(**layers, (std::vector<std::string>{"conv2d_1", "dropout_1", "dense_1"})) << name;
    auto weights = (*file)->ReadStrings(*(*file)->Find("/dense_1"), "weight_names");
    ASSERT_TRUE(weights.ok() && weights->has_value()) << name;
    EXPECT_EQ(**weights, (std::vector<std::string>{"dense_1/kernel:0", "dense_1/bias:0"})) << name;
    // Keras writes an empty list as an empty float64 array.
    auto none = (*file)->ReadStrings(*(*file)->Find("/dropout_1"), "weight_names");
    ASSERT_TRUE(none.ok() && none->has_value()) << name;
    EXPECT_TRUE((*none)->empty());
  }
}

TEST_F(H5FileTest, ReadsScalarsUtf8AndChunkedLists) {
  auto scalar = Open("strings_scalar.h5");
  ASSERT_TRUE(scalar.ok());
  // A scalar string is one string, but never a name list: Keras iterates a
  // name list, so "solo" would be the layers 's', 'o', 'l', 'o' (issue 16).
  auto solo = (*scalar)->ReadStrings((*scalar)->root(), "layer_names");
  ASSERT_TRUE(solo.ok() && solo->has_value());
  EXPECT_EQ(**solo, std::vector<std::string>{"solo"});
  auto as_list = (*scalar)->ReadChunkedStrings((*scalar)->root(), "layer_names");
  EXPECT_EQ(as_list.status().code(), StatusCode::kMalformed);

  auto utf8 = Open("strings_utf8_names.h5");
  ASSERT_TRUE(utf8.ok());
  auto layers = (*utf8)->ReadChunkedStrings(*(*utf8)->Find("/model_weights"), "layer_names");
  ASSERT_TRUE(layers.ok() && layers->has_value());
  EXPECT_EQ(**layers, std::vector<std::string>{"d\xc3\xa9nse"});
  auto config = (*utf8)->ReadString((*utf8)->root(), "model_config");  // fixed-length string
  ASSERT_TRUE(config.ok() && config->has_value()) << config.status().ToString();
  EXPECT_EQ((*config)->substr(0, 15), "{\"class_name\": ");

  auto chunked = Open("chunked_attributes.h5");
  ASSERT_TRUE(chunked.ok());
  EXPECT_FALSE((*chunked)->HasAttribute((*chunked)->root(), "layer_names"));
  auto all = (*chunked)->ReadChunkedStrings((*chunked)->root(), "layer_names");
  ASSERT_TRUE(all.ok() && all->has_value());
  ASSERT_EQ((*all)->size(), 12u);
  EXPECT_EQ((**all)[11], "layer_011");
  auto absent = (*chunked)->ReadChunkedStrings((*chunked)->root(), "no_such_list");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
}

TEST_F(H5FileTest, ClassifiesStorageAndTypes) {
  auto file = Open("dtypes.h5");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const File& f = **file;
  struct Case {
    const char* path;
    DType dtype;
    uint32_t swap;
    bool in_place;
  };
  for (const Case& c :
       {Case{"/numbers/f16", DType::kF16, 0, true}, Case{"/numbers/f32_be", DType::kF32, 4, true},
        Case{"/numbers/i64_be", DType::kI64, 8, true}, Case{"/numbers/bool", DType::kBool, 0, true},
        Case{"/numbers/bf16", DType::kBF16, 0, true}, Case{"/numbers/u64", DType::kU64, 0, true},
        Case{"/storage/gzip_shuffle_fletcher", DType::kF32, 0, false},
        Case{"/storage/chunked_be", DType::kF64, 8, false},
        Case{"/storage/compact", DType::kI32, 0, false},
        Case{"/storage/unwritten", DType::kF32, 0, false}}) {
    const Node* n = f.Find(c.path);
    ASSERT_NE(n, nullptr) << c.path;
    EXPECT_TRUE(n->dataset.usable.ok()) << c.path << ": " << n->dataset.usable.ToString();
    EXPECT_EQ(n->dataset.dtype, c.dtype) << c.path;
    EXPECT_EQ(n->dataset.swap_unit, c.swap) << c.path;
    EXPECT_EQ(n->dataset.in_place, c.in_place) << c.path;
  }
  EXPECT_TRUE(f.Find("/numbers/scalar")->dataset.shape.empty());
  auto tensor = f.MakeTensor(*f.Find("/storage/gzip_shuffle_fletcher"), "t", 100);
  EXPECT_EQ(tensor.status().code(), StatusCode::kLimitExceeded)
      << "4800 bytes over a 100-byte memory limit";
}

TEST_F(H5FileTest, RefusesEveryWayOutOfTheFile) {
  struct Case {
    const char* fixture;
    const char* rule;
  };
  for (const Case& c :
       {Case{"external_link.h5", "hdf5.external_link"}, Case{"soft_link.h5", "hdf5.soft_link"},
        Case{"external_storage.h5", "hdf5.external_storage"},
        Case{"virtual_dataset.h5", "hdf5.virtual_dataset"},
        Case{"virtual_dataset_unlimited.h5", "hdf5.virtual_dataset"},
        Case{"filter_plugin.h5", "hdf5.filter_plugin"}}) {
    ctx_ = ParseContext(ParseOptions{});
    auto file = Open(c.fixture);
    ASSERT_TRUE(file.ok()) << c.fixture << ": " << file.status().ToString();
    EXPECT_EQ(RefusalRules(), std::vector<std::string>{c.rule}) << c.fixture;
    EXPECT_EQ(ctx_.findings()[0].location, "/model_weights/dense/dense/kernel:0") << c.fixture;
  }
}

TEST_F(H5FileTest, CyclesAndAliasesAreMalformed) {
  auto cycle = Open("link_cycle.h5");
  EXPECT_EQ(cycle.status().code(), StatusCode::kMalformed);
  EXPECT_NE(cycle.status().message().find("'/extra/back' leads to the same object as '/extra'"),
            std::string::npos)
      << cycle.status().message();
  auto alias = Open("hard_link_alias.h5");
  EXPECT_EQ(alias.status().code(), StatusCode::kMalformed);
}

TEST_F(H5FileTest, ShapeBombsAndUnsupportedFiltersAreRecordedOnTheDataset) {
  auto bomb = Open("shape_bomb.h5");
  ASSERT_TRUE(bomb.ok());
  EXPECT_EQ((*bomb)->Find("/model_weights/dense/dense/kernel:0")->dataset.usable.code(),
            StatusCode::kLimitExceeded);
  auto scaleoffset = Open("filter_scaleoffset.h5");
  ASSERT_TRUE(scaleoffset.ok());
  EXPECT_EQ((*scaleoffset)->Find("/model_weights/dense/dense/kernel:0")->dataset.usable.code(),
            StatusCode::kUnsupported);
}

TEST_F(H5FileTest, GarbageIsMalformedNotACrash) {
  std::string image = testing::ReadFile(testing::Fixture("keras_h5/dtypes.h5"));
  for (size_t cut : {size_t{8}, size_t{100}, image.size() / 2}) {
    image_ = image.substr(0, cut);
    ctx_ = ParseContext(ParseOptions{});
    auto file = File::Open(AsBytes(image_), ctx_);
    EXPECT_FALSE(file.ok()) << cut;
  }
  image_ = "\x89HDF\r\n\x1a\n" + std::string(4000, '\xff');
  EXPECT_EQ(File::Open(AsBytes(image_), ctx_).status().code(), StatusCode::kMalformed);
}

}  // namespace
}  // namespace safemodel::loader::h5
