#!/usr/bin/python3
"""No function of the product over 120 lines (issue 10).

Usage: function_length.py SOURCE_DIR [LIMIT]
Measures every function defined at namespace scope in the tracked .cc files
of loader/, proto/, sandbox/ and converter/ (Google style: the definition
starts at column 0 and its closing brace is the next '}' at column 0).
Lambdas count toward the function that holds them. Bodies written inside a
class definition are not measured (the headers keep those short). Prints
every function over the limit and exits 1 if there is one.
"""
import re
import subprocess
import sys

FOLDERS = ["loader", "proto", "sandbox", "converter"]
NOT_A_FUNCTION = ("namespace", "using", "#", "struct", "class", "enum", "union", "template",
                  "constexpr", "static_assert", "}", "//", "extern")


def functions(lines):
    """(first line, line count, header) of each namespace-scope function."""
    i = 0
    while i < len(lines):
        line = lines[i]
        header = " ".join(lines[max(0, i - 3):i + 1])
        if (re.match(r"^[A-Za-z_~]", line) and not line.startswith(NOT_A_FUNCTION) and
                line.rstrip().endswith("{") and "(" in header and "=" not in line.split("(")[0]):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("}"):
                j += 1
            yield i + 1, j - i + 1, line.strip()
            i = j + 1
        else:
            i += 1


def main():
    root = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 120
    files = subprocess.run(["git", "-C", root, "ls-files", "--"] +
                           ["%s/*.cc" % f for f in FOLDERS],
                           capture_output=True, text=True, check=True).stdout.split()
    over, count = [], 0
    for path in files:
        with open("%s/%s" % (root, path), encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        for first, n, header in functions(lines):
            count += 1
            if n > limit:
                over.append((n, path, first, header[:90]))
    for n, path, first, header in sorted(over, reverse=True):
        print("%s:%d: %d lines (limit %d): %s" % (path, first, n, limit, header))
    if over:
        return 1
    print("%d functions in %d files, none over %d lines" % (count, len(files), limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
