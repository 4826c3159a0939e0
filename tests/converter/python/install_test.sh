#!/bin/sh
# The Python package as `cmake --install` lays it out: installed with DESTDIR
# under a scratch directory, then MOVED (an installed copy is relocatable),
# it imports from <prefix>/PYDIR with the system's interpreter and converts
# with the worker installed in <prefix>/libexec/safemodel, not the build
# tree's; the module links no libsafemodel.so and exports nothing of ours.
# With the configured prefix /usr or /usr/local, PYDIR is on the
# interpreter's own search path (README "Python").
# Usage: install_test.sh BUILD_DIR SOURCE_DIR PYTHON PYDIR PREFIX
set -eu
build=$1; src=$2; python=$3; pydir=$4; prefix=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
DESTDIR="$tmp/dest" cmake --install "$build" --prefix /opt/safemodel >/dev/null
root="$tmp/dest/opt/safemodel"
for f in __init__.py torch.py _layout.py; do test -f "$root/$pydir/safemodel/$f"; done
ext=$(ls "$root/$pydir/safemodel/"_native*.so)
# The module holds the converter library (libsafemodel.a) and must not load
# libsafemodel.so too (protobuf aborts on a schema registered twice); it
# exports its init function and no symbol of ours or protobuf's; its library
# search path, if any, is absolute entries only.
if readelf -d "$ext" | grep 'NEEDED' | grep -q 'libsafemodel'; then
  echo "$ext needs libsafemodel.so" >&2; exit 1
fi
nm -D --defined-only "$ext" | grep -q ' PyInit__native$' || { echo "no PyInit__native" >&2; exit 1; }
leaks=$(nm -D --defined-only -C "$ext" | cut -d' ' -f3- | grep -v -E \
        '^(PyInit__native|std::|void std::|(typeinfo|typeinfo name|vtable) for std::|__gnu_cxx::)' || true)
[ -z "$leaks" ] || { echo "$ext exports: $(echo "$leaks" | head -5)" >&2; exit 1; }
paths=$(readelf -d "$ext" | sed -n 's/.*Library r\(un\)\{0,1\}path: \[\(.*\)\]/\2/p')
for entry in $(echo "$paths" | tr ':' ' '); do
  case "$entry" in /*) ;; *) echo "$ext: relative RUNPATH entry '$entry'" >&2; exit 1 ;; esac
done
if [ -n "$paths" ]; then
  case ":$paths:" in *::*) echo "$ext: empty RUNPATH entry in '$paths'" >&2; exit 1 ;; esac
fi
mv "$root" "$tmp/moved"
case "$prefix" in
  /usr|/usr/local)
    env -u PYTHONPATH "$python" -c "import sys; assert '$prefix/$pydir' in sys.path, sys.path" ;;
esac
env -u SAFEMODEL_WORKER -u SAFEMODEL_HDF5_WORKER PYTHONPATH="$tmp/moved/$pydir" "$python" - \
    "$tmp" "$src/examples/models" <<'PY'
import os, sys
import safemodel
tmp, models = sys.argv[1], sys.argv[2]
moved = os.path.join(tmp, "moved")
assert safemodel.__file__.startswith(moved), safemodel.__file__
worker = safemodel._worker_from_layout()
assert worker == os.path.join(moved, "libexec", "safemodel", "safemodel-worker"), worker
r = safemodel.convert(os.path.join(models, "mlp.npz"), os.path.join(tmp, "mlp.safemodel"), check=True)
assert r.worker["program"] == "safemodel-worker" and not r.worker["hand_off"], r.worker
r = safemodel.convert(os.path.join(models, "keras_cnn.h5"), os.path.join(tmp, "cnn.safemodel"),
                      check=True)
assert r.worker["name_hint"] and r.worker["program"] == "safemodel-worker-hdf5", r.worker
with safemodel.safe_open(os.path.join(tmp, "cnn.safemodel")) as f:
    assert "conv/kernel:0" in f.keys()
    f.verify()
print("installed package converts with", worker)
PY
