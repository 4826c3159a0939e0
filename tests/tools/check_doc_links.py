#!/usr/bin/env python3
"""Checks the links of every Markdown file of the repository (ctest docs_links).

    check_doc_links.py SOURCE_DIR     check the tracked *.md files (all but tests/fixtures/)
    check_doc_links.py --self-test    check this checker on a scratch tree of good and bad links

A link fails when it leaves the repository (a URL, an absolute path, a relative path above
the root), when its target does not exist or is not tracked by git, or when its #anchor
names no heading of the target Markdown file (GitHub's heading ids). Links inside code
spans and fenced code blocks are text, not links. Exit 0 when every link resolves, 1
otherwise, with one line per broken link: FILE:LINE: TARGET: why.
"""
import os
import re
import subprocess
import sys
import tempfile
import unicodedata
import urllib.parse

EXCLUDED_PREFIXES = ("tests/fixtures/",)  # third-party studies and sample files

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*)>")
HTML_ATTR = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']*)["']""", re.I)
BARE_URL = re.compile(r"(?:\bhttps?://|\bwww\.)[^\s)>\]]*", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
HTML_ID = re.compile(r"""<a\s[^>]*\b(?:name|id)\s*=\s*["']([^"']+)["']""", re.I)


def slug(heading):
    """The id GitHub gives a heading: lower case, only letters, digits, marks, '_', '-' and
    spaces kept, spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    out = []
    for ch in text.lower():
        category = unicodedata.category(ch)
        if ch in " -" or category[0] in "LNM" or category == "Pc":
            out.append("-" if ch == " " else ch)
    return "".join(out)


def scan(text):
    """Yields (line number, kind, target) for every link outside code."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        line = CODE_SPAN.sub(lambda c: " " * len(c.group(0)), line)
        for m in REFERENCE_DEF.finditer(line):
            yield number, m.group(1).strip("<>")
        for m in INLINE_LINK.finditer(line):
            yield number, m.group(1).strip("<>")
        for m in AUTOLINK.finditer(line):
            yield number, m.group(1)
        for m in HTML_ATTR.finditer(line):
            yield number, m.group(1)
        without_links = AUTOLINK.sub(" ", INLINE_LINK.sub(" ", line))
        for m in BARE_URL.finditer(without_links):
            yield number, m.group(0)


def anchors(text):
    """The heading ids of a Markdown text, duplicates numbered as GitHub does."""
    seen = {}
    ids = set(HTML_ID.findall(text))
    fence = None
    for line in text.split("\n"):
        m = FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        h = ATX_HEADING.match(line)
        if not h:
            continue
        base = slug(h.group(2))
        n = seen.get(base, 0)
        ids.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return ids


def tracked_files(root):
    """Tracked paths relative to root, or None when root is not a git work tree."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    listed = out.stdout.decode("utf-8", "surrogateescape").split("\0")
    return {p for p in listed if p and os.path.lexists(os.path.join(root, p))}  # not deleted ones


def all_files(root):
    found = set()
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and not d.startswith("build") and d != "out"]
        for f in files:
            found.add(os.path.relpath(os.path.join(directory, f), root).replace(os.sep, "/"))
    return found


def check(root, files=None):
    """Returns the list of 'FILE:LINE: TARGET: why' for every broken link under root."""
    root = os.path.realpath(root)
    files = files if files is not None else (tracked_files(root) or all_files(root))
    directories = {os.path.dirname(p) for p in files}
    for d in list(directories):
        while d:
            d = os.path.dirname(d)
            directories.add(d)
    anchor_cache = {}
    errors = []
    check.links_seen = 0
    documents = sorted(p for p in files if p.endswith(".md") and not p.startswith(EXCLUDED_PREFIXES))
    for doc in documents:
        with open(os.path.join(root, doc), encoding="utf-8") as f:
            text = f.read()
        for line, target in scan(text):
            check.links_seen += 1
            why = judge(doc, target, files, directories, root, anchor_cache)
            if why:
                errors.append(f"{doc}:{line}: {target}: {why}")
    return errors


def judge(doc, target, files, directories, root, anchor_cache):
    if SCHEME.match(target) or target.lower().startswith("www."):
        return "a link out of the repository (use a relative path to a file in it)"
    if target.startswith("/"):
        return "an absolute path (use a path relative to this file)"
    path, _, fragment = target.partition("#")
    path = urllib.parse.unquote(path)
    if path:
        resolved = os.path.normpath(os.path.join(os.path.dirname(doc), path)).replace(os.sep, "/")
        if resolved == ".." or resolved.startswith("../"):
            return "leaves the repository"
        if resolved == ".":
            resolved = ""
    else:
        resolved = doc
    if resolved not in files and resolved not in directories:
        return "no such file in the repository" + (
            "" if not os.path.exists(os.path.join(root, resolved)) else " (it exists but is not tracked)")
    if fragment and resolved.endswith(".md"):
        if resolved not in anchor_cache:
            with open(os.path.join(root, resolved), encoding="utf-8") as f:
                anchor_cache[resolved] = anchors(f.read())
        if urllib.parse.unquote(fragment) not in anchor_cache[resolved]:
            return f"no heading with the id '{fragment}' in {resolved}"
    return None


SELF_TEST_FILES = {
    "README.md": "# Title\n\n## A section: `code` (here)\n\n## A section: `code` (here)\n",
    "sub/doc.md": "# Sub\n\nsee [up](../README.md#title)\n",
    "sub/data.txt": "x\n",
    "good.md": """# Good

[file](README.md) [anchor](README.md#a-section-code-here) [second](README.md#a-section-code-here-1)
[self](#good) [dir](sub/) [dir2](sub) [text](sub/data.txt) ![img](sub/data.txt "title")
[nested [brackets]](sub/doc.md) [angle](<sub/doc.md>)
`[not a link](missing-in-span.md)` and `` `https://in.span.example` ``

```
[not a link](missing-in-fence.md) https://in.fence.example
```

[ref]: sub/doc.md#sub
""",
    "bad.md": """# Bad

[missing](missing.md)
[anchor](README.md#no-such-heading)
[url](https://example.com/x)
[outside](../outside.md)
<https://example.org>
see http://example.net for more
[abs](/etc/passwd)
[self](#nope)
<a href="mailto:someone@example.com">mail</a>

[ref]: missing-ref.md
""",
    "tests/fixtures/ignored.md": "[ignored](https://example.com)\n",
}

SELF_TEST_EXPECTED = {
    "bad.md:3: missing.md", "bad.md:4: README.md#no-such-heading", "bad.md:5: https://example.com/x",
    "bad.md:6: ../outside.md", "bad.md:7: https://example.org", "bad.md:8: http://example.net",
    "bad.md:9: /etc/passwd", "bad.md:10: #nope", "bad.md:11: mailto:someone@example.com",
    "bad.md:13: missing-ref.md",
}


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        for path, text in SELF_TEST_FILES.items():
            os.makedirs(os.path.join(tmp, os.path.dirname(path)), exist_ok=True)
            with open(os.path.join(tmp, path), "w", encoding="utf-8") as f:
                f.write(text)
        found = {e.rsplit(": ", 1)[0] for e in check(tmp, all_files(tmp))}
    if found != SELF_TEST_EXPECTED:
        print("self-test failed")
        print("  missed:", sorted(SELF_TEST_EXPECTED - found))
        print("  wrongly flagged:", sorted(found - SELF_TEST_EXPECTED))
        return 1
    print(f"self-test passed: {len(SELF_TEST_EXPECTED)} broken links found, none wrongly")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    errors = check(argv[1])
    for e in errors:
        print(e)
    if errors:
        print(f"{len(errors)} broken link(s)")
        return 1
    print(f"every link resolves inside the repository ({check.links_seen} links checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
