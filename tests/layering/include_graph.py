#!/usr/bin/python3
"""Checks the include graph of the product's sources (issue 10).

Usage: include_graph.py SOURCE_DIR

1. Every quoted #include between the top-level layers points down:
     base (proto/base) <- format (proto) <- sandbox, loader
       <- protocol (converter/protocol) <- worker (converter/worker)
       <- converter <- cli (converter/cli), python (converter/python)
       <- examples
   sandbox and loader are side by side and know nothing of each other.
2. The graph between folders (a file's directory) has no cycle.
Tests (tests/) may include anything and are not checked.
Prints every offending edge with the file and line, and exits 1 if any.
"""
import os
import re
import subprocess
import sys

# Longest prefix first.
LAYERS = [
    ("proto/base/", "base", 0),
    ("proto/", "format", 1),
    ("sandbox/", "sandbox", 2),
    ("loader/", "loader", 2),
    ("converter/protocol/", "protocol", 3),
    ("converter/worker/", "worker", 4),
    ("converter/cli/", "cli", 6),
    ("converter/python/", "python", 6),
    ("converter/", "converter", 5),
    ("examples/", "examples", 7),
]
PUBLIC_DIRS = ["proto/base/include/", "proto/include/", "converter/include/"]
# The schema (proto/safemodel.proto) is compiled by the wire target: its
# generated header belongs to proto/wire.
SCHEMA = {"safemodel.pb.h", "proto/safemodel.pb.h", "safemodel.proto"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(path):
    for prefix, name, rank in LAYERS:
        if path.startswith(prefix):
            return name, rank
    return None, None


def resolve(src, target, root):
    """The repository path a quoted include names, or None (not ours)."""
    if target in SCHEMA:
        return "proto/wire/safemodel.pb.h"
    here = os.path.join(os.path.dirname(src), target)
    if os.path.exists(os.path.join(root, here)):
        return os.path.normpath(here)
    if target.startswith("safemodel/"):
        for d in PUBLIC_DIRS:
            if os.path.exists(os.path.join(root, d, target)):
                return d + target
    if target.endswith(".pb.h"):  # generated beside its schema
        return target
    if os.path.exists(os.path.join(root, target)):
        return target
    return None


# loader/'s own files are two levels: model, parser and stream are the
# parsers' base; registry, polyglot and the seam to libhdf5 (hdf5_seam.h and
# its two tables) the umbrella above every parser folder
# (tests/loader/check_layering.cmake orders the folders between).
UMBRELLA = re.compile(r"^loader/(registry|polyglot|hdf5_seam|hdf5_present|hdf5_absent)\.(h|cc)$")


def folder_of(path):
    if UMBRELLA.match(path):
        return "loader (registry, polyglot, hdf5 seam)"
    # A folder's public headers belong to the folder itself.
    return re.sub(r"/include/safemodel$", "", os.path.dirname(path))


def find_cycle(graph):
    """One cycle of `graph` (dict node -> set of nodes) as a list, or None."""
    color, stack = {}, []
    for start in sorted(graph):
        if color.get(start):
            continue
        # Iterative DFS: (node, iterator over its successors).
        work = [(start, iter(sorted(graph.get(start, ()))))]
        color[start] = 1
        stack.append(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                color[node] = 2
                stack.pop()
                work.pop()
            elif color.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            elif not color.get(nxt):
                color[nxt] = 1
                stack.append(nxt)
                work.append((nxt, iter(sorted(graph.get(nxt, ())))))
    return None


def main():
    root = sys.argv[1]
    files = subprocess.run(["git", "-C", root, "ls-files", "*.cc", "*.h", "*.c", "*.proto"],
                           capture_output=True, text=True, check=True).stdout.split()
    errors = []
    folders = {}
    for src in files:
        if src.startswith("tests/"):
            continue
        src_layer, src_rank = layer_of(src)
        if src_layer is None:
            continue
        with open(os.path.join(root, src), encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if src.endswith(".proto"):
                    m = re.match(r'^\s*import\s+"([^"]+)"', line)
                if not m:
                    continue
                dst = resolve(src, m.group(1), root)
                if dst is None:
                    errors.append("%s:%d: cannot resolve include \"%s\"" % (src, lineno, m.group(1)))
                    continue
                dst_layer, dst_rank = layer_of(dst)
                if dst_layer is None:
                    errors.append("%s:%d: includes %s, outside the product" % (src, lineno, dst))
                    continue
                if dst_layer != src_layer and dst_rank >= src_rank:
                    errors.append("%s:%d: %s includes %s (%s): the layers point the other way"
                                  % (src, lineno, src_layer, dst, dst_layer))
                a, b = folder_of(src), folder_of(dst)
                if a != b:
                    folders.setdefault(a, set()).add(b)
    cycle = find_cycle(folders)
    if cycle:
        errors.append("folder include cycle: " + " -> ".join(cycle))
    for e in errors:
        print(e)
    if errors:
        return 1
    print("include graph: %d folders, layered, acyclic" % len(folders))
    return 0


if __name__ == "__main__":
    sys.exit(main())
