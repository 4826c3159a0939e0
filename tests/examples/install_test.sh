#!/bin/sh
# Installs the build into a scratch prefix, builds examples/consumer against
# it with find_package(safemodel), and converts the bundled example model with
# the installed worker. Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -x "$tmp/prefix/libexec/safemodel/safemodel-worker"
test -x "$tmp/prefix/libexec/safemodel/safemodel-worker-hdf5"
test -x "$tmp/prefix/bin/safe-convert"
test -f "$tmp/prefix/include/safemodel/reader.h"
# Installed programs search absolute directories only for their libraries: an
# empty or relative RUNPATH/RPATH entry would be resolved against the
# directory the user runs them from (tests/sandbox/planting_test.cc checks
# the build tree).
for prog in "$tmp/prefix/libexec/safemodel/safemodel-worker" \
            "$tmp/prefix/libexec/safemodel/safemodel-worker-hdf5" "$tmp/prefix/bin/safe-convert"; do
  paths=$(readelf -d "$prog" | sed -n 's/.*Library r\(un\)\{0,1\}path: \[\(.*\)\]/\2/p')
  [ -z "$paths" ] && continue  # no search path at all: nothing to check
  case ":$paths:" in
    *::*) echo "$prog: empty RUNPATH entry in '$paths'" >&2; exit 1 ;;
  esac
  for entry in $(echo "$paths" | tr ':' ' '); do
    case "$entry" in
      /*) ;;
      *) echo "$prog: relative RUNPATH entry '$entry'" >&2; exit 1 ;;
    esac
  done
done
cmake -S "$src/examples/consumer" -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
out=$("$tmp/consumer/library_usage" "$src/examples/models/mlp.npz" "$tmp/mlp.safemodel" out.kernel \
      "$tmp/prefix/libexec/safemodel/safemodel-worker")
echo "$out"
echo "$out" | grep -q "^out.kernel\[0\] = "
# The installed CLI finds its worker by itself.
"$tmp/prefix/bin/safe-convert" "$src/examples/models/mlp.npz" "$tmp/cli.safemodel" --no-sync
cmp "$tmp/mlp.safemodel" "$tmp/cli.safemodel"
# A Keras .h5 goes from the installed lean worker to the installed HDF5 worker.
"$tmp/prefix/bin/safe-convert" "$src/examples/models/keras_cnn.h5" "$tmp/cnn.safemodel" --no-sync \
  --json | grep -q '"hand_off": true'
echo "install test passed"
