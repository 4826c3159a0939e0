#include "loader/keras_h5/h5_memory_driver.h"

#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>

namespace safemodel::loader::h5 {

namespace {

// The largest address a file may have: what libhdf5's own drivers use for a
// 64-bit off_t. Our images are far smaller; reads past the image are zeros.
constexpr haddr_t kMaxAddress = (static_cast<haddr_t>(1) << 63) - 1;

// What H5Pset_driver stores in the property list (copied bitwise by libhdf5).
struct DriverConfig {
  const uint8_t* data;
  uint64_t size;
  MapResidency* residency;  // notes every read, or null (SetMemoryDriver)
};

// One open file. libhdf5 requires the public H5FD_t to be the first member.
struct MemoryFile {
  H5FD_t pub;
  DriverConfig config;
  haddr_t eoa;
};

MemoryFile* AsFile(H5FD_t* f) { return reinterpret_cast<MemoryFile*>(f); }
const MemoryFile* AsFile(const H5FD_t* f) { return reinterpret_cast<const MemoryFile*>(f); }

void* FaplGet(H5FD_t* file) {
  // libhdf5 releases this with free() (no fapl_free callback).
  void* copy = std::malloc(sizeof(DriverConfig));
  if (copy != nullptr) std::memcpy(copy, &AsFile(file)->config, sizeof(DriverConfig));
  return copy;
}

H5FD_t* Open(const char* name, unsigned flags, hid_t fapl, haddr_t maxaddr) {
  if (name == nullptr || std::strcmp(name, kMemoryImageName) != 0) return nullptr;
  // Read-only: any request to write, create or truncate fails.
  if ((flags & (H5F_ACC_RDWR | H5F_ACC_TRUNC | H5F_ACC_EXCL | H5F_ACC_CREAT)) != 0) return nullptr;
  if (maxaddr == 0 || maxaddr == HADDR_UNDEF) return nullptr;
  const auto* config = static_cast<const DriverConfig*>(H5Pget_driver_info(fapl));
  if (config == nullptr || config->data == nullptr) return nullptr;
  auto* file = new (std::nothrow) MemoryFile();
  if (file == nullptr) return nullptr;
  file->config = *config;
  file->eoa = 0;
  return &file->pub;
}

herr_t Close(H5FD_t* f) {
  delete AsFile(f);
  return 0;
}

int Compare(const H5FD_t* a, const H5FD_t* b) {
  const DriverConfig& x = AsFile(a)->config;
  const DriverConfig& y = AsFile(b)->config;
  if (x.data != y.data) return x.data < y.data ? -1 : 1;
  if (x.size != y.size) return x.size < y.size ? -1 : 1;
  // libhdf5 shares one open file between two opens that compare equal: each
  // File's reads must go to its own MapResidency, which dies with it.
  if (x.residency != y.residency) return std::less<>()(x.residency, y.residency) ? -1 : 1;
  return 0;
}

herr_t Query(const H5FD_t* /*file*/, unsigned long* flags) {
  // Deliberately absent: H5FD_FEAT_POSIX_COMPAT_HANDLE (there is no file
  // descriptor to hand out) and H5FD_FEAT_ALLOW_FILE_IMAGE.
  *flags = H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE;
  return 0;
}

haddr_t GetEoa(const H5FD_t* file, H5FD_mem_t /*type*/) { return AsFile(file)->eoa; }

herr_t SetEoa(H5FD_t* file, H5FD_mem_t /*type*/, haddr_t addr) {
  if (addr > kMaxAddress) return -1;
  AsFile(file)->eoa = addr;
  return 0;
}

haddr_t GetEof(const H5FD_t* file, H5FD_mem_t /*type*/) { return AsFile(file)->config.size; }

// There is no file descriptor. The "handle" is the driver's own file record,
// which MemoryFileBaseAddress() reads; nothing outside this file sees it.
herr_t GetHandle(H5FD_t* file, hid_t /*fapl*/, void** handle) {
  *handle = file;
  return 0;
}

herr_t Read(H5FD_t* f, H5FD_mem_t /*type*/, hid_t /*dxpl*/, haddr_t addr, size_t size, void* buf) {
  const MemoryFile* file = AsFile(f);
  if (addr == HADDR_UNDEF || addr > kMaxAddress || size > kMaxAddress - addr) return -1;
  auto* out = static_cast<uint8_t*>(buf);
  // Bytes inside the image are copied; anything past its end reads as zeros,
  // which is the contract of libhdf5's own drivers.
  uint64_t available = addr < file->config.size ? file->config.size - addr : 0;
  uint64_t n = size < available ? size : available;
  if (n > 0) {
    std::memcpy(out, file->config.data + addr, n);
    if (file->config.residency != nullptr) file->config.residency->Touch(ByteView(file->config.data + addr, n));
  }
  if (n < size) std::memset(out + n, 0, size - n);
  return 0;
}

herr_t Write(H5FD_t*, H5FD_mem_t, hid_t, haddr_t, size_t, const void*) { return -1; }

H5FD_class_t MakeClass() {
  H5FD_class_t c;
  std::memset(&c, 0, sizeof(c));
  c.name = "safemodel_memory";
  c.maxaddr = kMaxAddress;
  c.fc_degree = H5F_CLOSE_WEAK;
  c.fapl_size = sizeof(DriverConfig);
  c.fapl_get = FaplGet;
  c.open = Open;
  c.close = Close;
  c.cmp = Compare;
  c.query = Query;
  c.get_eoa = GetEoa;
  c.set_eoa = SetEoa;
  c.get_eof = GetEof;
  c.get_handle = GetHandle;
  c.read = Read;
  c.write = Write;
  const H5FD_mem_t dichotomy[H5FD_MEM_NTYPES] = H5FD_FLMAP_DICHOTOMY;
  std::memcpy(c.fl_map, dichotomy, sizeof(dichotomy));
  return c;
}

}  // namespace

Result<hid_t> RegisterMemoryDriver() {
  static const hid_t id = [] {
    static const H5FD_class_t cls = MakeClass();
    return H5FDregister(&cls);
  }();
  if (id < 0) return Status::Internal("cannot register the in-memory HDF5 driver");
  return id;
}

Status SetMemoryDriver(hid_t fapl, ByteView image, MapResidency* residency) {
  SAFEMODEL_ASSIGN_OR_RETURN(hid_t driver, RegisterMemoryDriver());
  DriverConfig config{image.data(), image.size(), residency};
  if (H5Pset_driver(fapl, driver, &config) < 0) {
    return Status::Internal("cannot select the in-memory HDF5 driver");
  }
  return Status::Ok();
}

Result<uint64_t> MemoryFileBaseAddress(hid_t file) {
  SAFEMODEL_ASSIGN_OR_RETURN(hid_t driver, RegisterMemoryDriver());
  hid_t fapl = H5Fget_access_plist(file);
  if (fapl < 0) return Status::Internal("cannot read the HDF5 file's access properties");
  hid_t used = H5Pget_driver(fapl);
  H5Pclose(fapl);
  if (used != driver) return Status::Internal("the HDF5 file was not opened from memory");
  void* handle = nullptr;
  if (H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) < 0 || handle == nullptr) {
    return Status::Internal("cannot reach the in-memory HDF5 driver's file record");
  }
  return static_cast<uint64_t>(AsFile(static_cast<H5FD_t*>(handle))->pub.base_addr);
}

}  // namespace safemodel::loader::h5
