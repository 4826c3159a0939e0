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
test -x "$tmp/prefix/bin/safe-convert"
test -f "$tmp/prefix/include/safemodel/reader.h"
cmake -S "$src/examples/consumer" -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
out=$("$tmp/consumer/library_usage" "$src/examples/models/mlp.npz" "$tmp/mlp.safemodel" out.kernel \
      "$tmp/prefix/libexec/safemodel/safemodel-worker")
echo "$out"
echo "$out" | grep -q "^out.kernel\[0\] = "
# The installed CLI finds its worker by itself.
"$tmp/prefix/bin/safe-convert" "$src/examples/models/mlp.npz" "$tmp/cli.safemodel" --no-sync
cmp "$tmp/mlp.safemodel" "$tmp/cli.safemodel"
echo "install test passed"
