#!/bin/sh
# Installs the build into a scratch prefix, MOVES the prefix elsewhere (an
# installed copy is relocatable), builds examples/consumer against it with
# find_package(safemodel), and converts the bundled example model with the
# installed worker. Usage: install_test.sh BUILD_DIR SOURCE_DIR
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
test -f "$tmp/prefix/share/man/man1/safe-convert.1"
test -f "$tmp/prefix/share/bash-completion/completions/safe-convert"
# Only the public targets are exported (safemodel::format, libsafemodel.so;
# safemodel::safemodel, libsafemodel.a, which holds its internal parts), and
# no internal archive is installed.
exported=$(sed -n 's/^ *add_library(\([^ ]*\) .*IMPORTED.*/\1/p' \
           "$tmp/prefix/lib/cmake/safemodel/"safemodel*Targets*.cmake | sort | tr '\n' ' ')
[ "$exported" = "safemodel::format safemodel::safemodel " ] || {
  echo "exported targets: '$exported', expected safemodel::format safemodel::safemodel" >&2; exit 1; }
if grep -n 'safemodel_[a-z_]*' "$tmp/prefix/lib/cmake/safemodel/"safemodel*Targets*.cmake >&2; then
  echo "an export file names an internal target" >&2; exit 1
fi
for a in "$tmp/prefix/lib/"*.a; do
  [ "$(basename "$a")" = libsafemodel.a ] || { echo "internal archive installed: $a" >&2; exit 1; }
done
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
# Relocation: nothing below may depend on where the prefix was installed.
mv "$tmp/prefix" "$tmp/moved"
tmp_prefix=$tmp/moved
cmake -S "$src/examples/consumer" -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$tmp_prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
out=$("$tmp/consumer/library_usage" "$src/examples/models/mlp.npz" "$tmp/mlp.safemodel" out.kernel \
      "$tmp_prefix/libexec/safemodel/safemodel-worker")
echo "$out"
echo "$out" | grep -q "^out.kernel\[0\] = "
# The installed CLI finds its worker by itself.
"$tmp_prefix/bin/safe-convert" "$src/examples/models/mlp.npz" "$tmp/cli.safemodel" --no-sync
cmp "$tmp/mlp.safemodel" "$tmp/cli.safemodel"
# The two workers are a pair: the installed CLI starts the lean one, which
# hands a Keras file to the HDF5 worker beside it (or, for a file named
# .h5, starts that one directly); an .npz stays in the lean one.
"$tmp_prefix/bin/safe-convert" "$src/examples/models/mlp.npz" "$tmp/mlp2.safemodel" --no-sync \
  --json | grep -q '"hand_off": false'
"$tmp_prefix/bin/safe-convert" "$src/examples/models/keras_cnn.h5" "$tmp/cnn.safemodel" --no-sync \
  --json >"$tmp/cnn.json"
grep -q '"name_hint": true' "$tmp/cnn.json"
grep -q '"program": "safemodel-worker-hdf5"' "$tmp/cnn.json"
cp "$src/examples/models/keras_cnn.h5" "$tmp/keras_cnn.bin"
"$tmp_prefix/bin/safe-convert" "$tmp/keras_cnn.bin" "$tmp/cnnb.safemodel" --no-sync \
  --json | grep -q '"hand_off": true'
cmp "$tmp/cnn.safemodel" "$tmp/cnnb.safemodel"
# SAFEMODEL_WORKER names the lean worker; the HDF5 worker is the one beside
# it (none here: exit 70, naming the directory), or SAFEMODEL_HDF5_WORKER.
mkdir "$tmp/workers"
cp "$tmp_prefix/libexec/safemodel/safemodel-worker" "$tmp/workers/"
code=0
SAFEMODEL_WORKER="$tmp/workers/safemodel-worker" "$tmp_prefix/bin/safe-convert" \
  "$src/examples/models/keras_cnn.h5" "$tmp/cnn2.safemodel" --no-sync 2>"$tmp/err" || code=$?
[ "$code" = 70 ] || { echo "no HDF5 worker beside SAFEMODEL_WORKER: exit $code" >&2; exit 1; }
grep -q "$tmp/workers" "$tmp/err"
SAFEMODEL_WORKER="$tmp/workers/safemodel-worker" \
  SAFEMODEL_HDF5_WORKER="$tmp_prefix/libexec/safemodel/safemodel-worker-hdf5" \
  "$tmp_prefix/bin/safe-convert" "$src/examples/models/keras_cnn.h5" "$tmp/cnn2.safemodel" --no-sync
cmp "$tmp/cnn.safemodel" "$tmp/cnn2.safemodel"
# The reader-only consumer, as an inference engine builds it: with
# find_package(safemodel COMPONENTS format) in a project that asks for C++17
# (the exported target raises it to C++20), and with pkg-config. Both link
# the shared libsafemodel.so only, and read the file the CLI wrote.
test -f "$tmp_prefix/lib/pkgconfig/safemodel.pc"
cmake -S "$src/examples/reader" -B "$tmp/reader" -G Ninja -DCMAKE_PREFIX_PATH="$tmp_prefix" \
      -DCMAKE_CXX_STANDARD=17 >/dev/null
cmake --build "$tmp/reader" >/dev/null
readelf -d "$tmp/reader/reader_only" | grep -q 'NEEDED.*\[libsafemodel\.so\.' || {
  echo "the find_package reader does not link libsafemodel.so" >&2; exit 1; }
"$tmp/reader/reader_only" "$tmp/cli.safemodel" | grep -q "^out.kernel f32 "
export PKG_CONFIG_PATH="$tmp_prefix/lib/pkgconfig"
# shellcheck disable=SC2046  # pkg-config's output is a list of flags
c++ -std=c++20 -o "$tmp/reader_pc" "$src/examples/reader_only.cc" $(pkg-config --cflags --libs safemodel) \
    -Wl,-rpath,"$(pkg-config --variable=libdir safemodel)"
readelf -d "$tmp/reader_pc" | grep 'NEEDED' | grep -q -v -E 'seccomp|protobuf' || exit 1
if readelf -d "$tmp/reader_pc" | grep -E 'NEEDED.*(seccomp|protobuf)'; then exit 1; fi
"$tmp/reader_pc" "$tmp/cli.safemodel" | grep -q "^out.kernel f32 "
# A program that links both libraries is refused when CMake generates its
# build: both hold the schema's generated code, and protobuf would abort at
# startup on the second registration of safemodel.proto.
mkdir "$tmp/both"
cat >"$tmp/both/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.25)
project(safemodel_both LANGUAGES CXX)
find_package(safemodel 0.1 REQUIRED)
add_executable(library_usage "$src/examples/library_usage.cc")
target_link_libraries(library_usage PRIVATE safemodel::safemodel safemodel::format)
EOF
if cmake -S "$tmp/both" -B "$tmp/both/build" -G Ninja -DCMAKE_PREFIX_PATH="$tmp_prefix" \
     >"$tmp/both.log" 2>&1; then
  echo "a project linking safemodel::safemodel and safemodel::format was accepted" >&2; exit 1
fi
grep -q 'INTERFACE_SAFEMODEL_LIBRARY property of "safemodel::' "$tmp/both.log" || {
  cat "$tmp/both.log" >&2; exit 1; }
echo "install test passed"
