#!/usr/bin/python3
"""No tracked source file over 1,000 lines (issue 10: files stay small enough to review).

Usage: file_length.py SOURCE_DIR
Counts the C/C++ sources, Python and shell scripts, CMake files and schemas
tracked by git, fixtures (generated data) excepted. Prints every file over
the limit and exits 1 if there is one.
"""
import subprocess
import sys

LIMIT = 1000
PATTERNS = ["*.cc", "*.h", "*.c", "*.py", "*.sh", "*.cmake", "CMakeLists.txt", "*.proto"]


def main():
    root = sys.argv[1]
    files = subprocess.run(["git", "-C", root, "ls-files", "--"] + PATTERNS,
                           capture_output=True, text=True, check=True).stdout.split()
    over = []
    for path in files:
        if path.startswith("tests/fixtures/"):
            continue
        try:
            with open("%s/%s" % (root, path), "rb") as f:
                lines = f.read().count(b"\n")
        except FileNotFoundError:  # deleted in the work tree
            continue
        if lines > LIMIT:
            over.append((lines, path))
    for lines, path in sorted(over, reverse=True):
        print("%s: %d lines (limit %d)" % (path, lines, LIMIT))
    if over:
        return 1
    print("%d files, none over %d lines" % (len(files), LIMIT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
