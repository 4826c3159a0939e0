// SAFEMODEL_EXPORT marks the public API of the shared library
// (libsafemodel.so): everything else in it is compiled with hidden
// visibility, so that a host process sees our public names only, and never
// the internal ones or those of the libraries we embed (protobuf).
#ifndef SAFEMODEL_EXPORT_H_
#define SAFEMODEL_EXPORT_H_

#if defined(__GNUC__) || defined(__clang__)
#define SAFEMODEL_EXPORT [[gnu::visibility("default")]]
#else
#define SAFEMODEL_EXPORT
#endif

#endif  // SAFEMODEL_EXPORT_H_
