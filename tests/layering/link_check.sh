#!/bin/sh
# What the built programs and libraries link and export (issue 10):
# - safemodel-worker and safemodel-worker-hdf5: no libcrypto, no libxxhash,
#   no .safemodel reader or writer inside (they compute no digest and write
#   no file); the lean safemodel-worker no libhdf5 either;
# - libsafemodel.so: SONAME libsafemodel.so.<major>.<minor>, no libseccomp,
#   and only the public API exported: no protobuf, no schema classes
#   (safemodel::v1), no internal namespace (wire, format, sandbox), no
#   hashing library's symbols;
# - reader_only (examples/): links libsafemodel.so and neither libseccomp
#   nor the conversion pipeline, and reads a .safemodel file.
# Usage: link_check.sh BIN_DIR LIBSAFEMODEL_SO SONAME MODEL SANITIZED
# (MODEL is converted with the built safe-convert for reader_only to read;
# SANITIZED is 1 for a sanitizer build.)
set -eu
bin=$1; lib=$2; soname=$3; model=$4; sanitized=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

for worker in "$bin/safemodel-worker" "$bin/safemodel-worker-hdf5"; do
  name=$(basename "$worker")
  # What it calls: no digest function of OpenSSL or xxHash.
  if nm -D --undefined-only "$worker" | grep -E ' (EVP_|SHA[0-9]|XXH)' >/dev/null; then
    bad "$name calls a hashing library: $(nm -D --undefined-only "$worker" | grep -E ' (EVP_|SHA[0-9]|XXH)' | head -3)"
  fi
  # What it loads. A sanitizer build links with --no-as-needed, which makes
  # every library of libhdf5's link interface (libcrypto among them) NEEDED
  # whether used or not; only the symbol check above applies there.
  if [ "$sanitized" = 0 ]; then
    for l in $(needed "$worker"); do
      case "$l" in libcrypto*|libssl*|libxxhash*) bad "$name needs $l" ;; esac
    done
  fi
  if nm -C "$worker" | grep -E 'safemodel::(Model|SafemodelWriter|format::)' >/dev/null; then
    bad "$name holds the .safemodel reader or writer:"
    nm -C "$worker" | grep -E 'safemodel::(Model|SafemodelWriter|format::)' | head -5 >&2
  fi
done
# The lean worker has no libhdf5 at all, in any build (loader/hdf5_seam.h).
if needed "$bin/safemodel-worker" | grep -E 'hdf5' >/dev/null; then
  bad "safemodel-worker needs libhdf5: $(needed "$bin/safemodel-worker" | grep hdf5)"
fi
if nm -D --undefined-only "$bin/safemodel-worker" | grep -E ' H5[A-Z]' >/dev/null; then
  bad "safemodel-worker calls libhdf5"
fi

got=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$got" = "$soname" ] || bad "libsafemodel.so has SONAME '$got', expected '$soname'"
for l in $(needed "$lib"); do
  case "$l" in libseccomp*) bad "libsafemodel.so needs $l" ;; esac
done
# Every exported definition is our public API (C++ in namespace safemodel,
# the C interface of safemodel/c_api.h as sm_*) or a vague-linkage instance
# of the C++ library's templates (which libstdc++ declares visible).
exported=$(nm -D --defined-only -C "$lib" | cut -d' ' -f3-)
[ -n "$exported" ] || bad "libsafemodel.so exports nothing"
leaks=$(echo "$exported" | grep -v -E '^(safemodel::|sm_[a-z0-9_]+$|std::|void std::|(typeinfo|typeinfo name|vtable) for std::|__gnu_cxx::)' || true)
[ -z "$leaks" ] || bad "libsafemodel.so exports non-API symbols: $(echo "$leaks" | head -5)"
internal=$(echo "$exported" | grep -E '^((typeinfo (name )?for|vtable for) )?(google::|safemodel::(v1|wire|format|sandbox|protocol)::)' || true)
[ -z "$internal" ] || bad "libsafemodel.so exports internals: $(echo "$internal" | head -5)"
if nm -D --defined-only "$lib" | grep -E ' (XXH|SHA256|EVP_)' >/dev/null; then
  bad "libsafemodel.so exports a hashing library's symbols"
fi
echo "$exported" | grep -q '^safemodel::Model::Open' || bad "libsafemodel.so does not export Model::Open"

reader=$bin/reader_only
needs=$(needed "$reader")
echo "$needs" | grep -qx "$soname" || bad "reader_only does not link $soname (needs: $needs)"
for l in $needs; do
  case "$l" in libseccomp*|libprotobuf*|libcrypto*|libxxhash*) bad "reader_only needs $l" ;; esac
done
if nm -C "$reader" | grep -E 'safemodel::(ConvertFile|sandbox::)' >/dev/null; then
  bad "reader_only holds the conversion pipeline or the sandbox"
fi
"$bin/safe-convert" "$model" "$tmp/m.safemodel" --no-sync
out=$("$reader" "$tmp/m.safemodel") || bad "reader_only failed on a converted $model"
echo "$out" | head -3
[ "$fail" = 0 ] && echo "link check passed"
exit "$fail"
