#!/usr/bin/python3
"""The real loaders against the safetensors and HF-index readings (a canary test).

  real_loaders_test.py SAFE_CONVERT SOURCE_DIR

Hands each file below, in a throwaway forked process each
(tests/differential/loader_server.py: the canary module safemodel_canary on
sys.path, its import writes a marker file), to pickle.load, torch.load
(weights_only False and True) and np.load(allow_pickle=True), and, in a
fresh interpreter each, to json.load; records what every loader did (printed
as one JSON object) and checks:

  - a file safe-convert converts (exit 0), or reads as an HF index, makes no
    loader run the canary, and no loader but its own format's reads it (a
    file that is two things to two loaders is refused: LOADERS.md);
  - a file that one loader runs as code is refused by safe-convert, with the
    finding format.polyglot naming both readings (exit 1 when the other
    reading carries code);
  - the expected verdict per file, and what the loaders did where it is a
    fact the converter relies on (the payload of the length-prefix pickle
    really runs under pickle.load: the refusal is not of a harmless file).

Files: a plain .safetensors; the length prefix read by pickle as GLOBAL
"os" + a name through the header (loader/README.md, "safetensors"); the
length prefix read as a STRING that runs to a newline in the header, the
pickle then going on through the header into the tensor bytes, which call
the canary; a clean HF index; the HF index that is also a tar archive to
torch.load (loader/README.md, "Hugging Face checkpoint indexes").

Exit 0 pass, 1 fail, 77 skipped (no torch or numpy in this interpreter).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True

try:
    import numpy  # noqa: F401
    import torch  # noqa: F401
except ImportError as e:
    print("skipped: %s" % e)
    sys.exit(77)

SAFE_CONVERT, SOURCE = sys.argv[1], sys.argv[2]
DIFF = os.path.join(SOURCE, "tests", "differential")
LOADERS = ["pickle", "torch", "torch_weights_only", "np_load_pickle"]

CANARY_CALL = b"csafemodel_canary\nfire\n(tR."


def safetensors(header, data):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def prefix_global():
    # GLOBAL: module line "os" in the prefix, the name line (with the
    # prefix's zero bytes) running through the header; then a call.
    return b"cos\n\0\0\0\0" + b'{"__metadata__":{"a":"b"}}' + b"\n(S'touch CANARY'\ntR."


def prefix_string():
    # Bytes 0-7: 'S' '"' 0 0 | 0 0 0 0, the header length 0x2253 (below
    # 2^32, '{' at byte 8: a safetensors file). To pickle: STRING, whose
    # line starts with '"' and ends at the first newline, placed as JSON
    # whitespace right after a JSON string (so the line ends with '"');
    # then '}' '}' (EMPTY_DICT twice, the end of the JSON), then the tensor
    # bytes: GLOBAL safemodel_canary.fire, called, STOP.
    n = 0x2253
    payload = CANARY_CALL
    head = '{"t":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]},"__metadata__":{"k":"' % (
        len(payload), len(payload))
    tail = '"\n}}'
    fill = n - len(head) - len(tail)
    header = (head + "v" * fill + tail).encode()
    assert len(header) == n
    image = b'S"\0\0\0\0\0\0' + header + payload
    assert struct.unpack("<Q", image[:8])[0] == n and image[8:9] == b"{"
    json.loads(header)  # it is a valid safetensors header
    return image


def load_all(server, path):
    out = {}
    for loader in LOADERS:
        server.stdin.write(json.dumps({"id": len(out), "loader": loader, "path": path, "timeout": 60}) + "\n")
        server.stdin.flush()
        ans = json.loads(server.stdout.readline())
        out[loader] = {"ok": ans["ok"], "canary": ans["canary"], "error": ans["error"][:160]}
    # json.load, in a fresh interpreter, with the canary marker set as well.
    marker = path + ".json-canary"
    code = ("import json,sys\ntry:\n  v=json.load(open(sys.argv[1]))\n  print('ok', type(v).__name__)\n"
            "except BaseException as e:\n  print('err', type(e).__name__, str(e)[:120])\n")
    env = dict(os.environ, SAFEMODEL_CANARY_MARKER=marker,
               PYTHONPATH=os.path.join(DIFF, "canary"))
    r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, env=env, timeout=60)
    said = r.stdout.strip()
    out["json"] = {"ok": said.startswith("ok"), "canary": os.path.exists(marker), "error": said}
    return out


def convert(path, work):
    report = os.path.join(work, "report.json")
    out = os.path.join(work, "out.safemodel")
    for p in (report, out):
        if os.path.exists(p):
            os.unlink(p)
    r = subprocess.run([SAFE_CONVERT, "--no-sync", "-q", "--report", report, path, out], capture_output=True,
                       text=True, timeout=120)
    rep = json.load(open(report))
    return {"exit": r.returncode, "format": rep["input"]["format"],
            "rules": sorted({f["rule"] for f in rep["findings"]}),
            "polyglot": [f["message"][:200] for f in rep["findings"] if f["rule"] == "format.polyglot"]}


def main():
    failures = []
    work = tempfile.mkdtemp(prefix="safemodel-real-loaders-")
    files = {
        "plain.safetensors": safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                                         struct.pack("<2f", 1.5, -2.0)),
        "prefix_global.safetensors": prefix_global(),
        "prefix_string.safetensors": prefix_string(),
        "clean.bin.index.json": open(os.path.join(SOURCE, "tests/fixtures/hf_index/clean.bin.index.json"),
                                     "rb").read(),
        "tar_polyglot.bin.index.json": open(os.path.join(SOURCE,
                                                         "tests/fixtures/hf_index/tar_polyglot.bin.index.json"),
                                            "rb").read(),
    }
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    server = subprocess.Popen([sys.executable, os.path.join(DIFF, "loader_server.py")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    record = {}
    try:
        for name, data in files.items():
            path = os.path.join(work, name)
            with open(path, "wb") as f:
                f.write(data)
            record[name] = {"loaders": load_all(server, path), "safe_convert": convert(path, work)}
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    print(json.dumps(record, indent=1, sort_keys=True))

    def fail(name, why):
        failures.append("%s: %s" % (name, why))

    for name, rec in record.items():
        loaders, sc = rec["loaders"], rec["safe_convert"]
        fired = [l for l, a in loaders.items() if a["canary"]]
        readers = [l for l, a in loaders.items() if a["ok"]]
        accepted = sc["exit"] == 0 or (sc["format"] == "hf_index" and not sc["polyglot"])
        if accepted and fired:
            fail(name, "safe-convert accepts it, but %s ran the canary" % fired)
        if accepted and name.endswith(".safetensors") and readers:
            fail(name, "converted as safetensors, but %s read it too" % readers)
        if accepted and name.endswith(".json") and readers != ["json"]:
            fail(name, "read as an HF index, but the loaders that read it are %s" % readers)
        if fired and (sc["exit"] != 1 or not sc["polyglot"]):
            fail(name, "%s ran code from it, yet safe-convert did not refuse it as a polyglot (exit %d, %s)"
                 % (fired, sc["exit"], sc["rules"]))

    # The verdicts, and the loader facts they rest on.
    r = record["plain.safetensors"]
    if r["safe_convert"]["exit"] != 0 or r["safe_convert"]["format"] != "safetensors":
        fail("plain.safetensors", "not converted as safetensors: %s" % r["safe_convert"])
    r = record["prefix_global.safetensors"]
    if r["safe_convert"]["exit"] != 1 or not r["safe_convert"]["polyglot"]:
        fail("prefix_global.safetensors", "not refused as a polyglot: %s" % r["safe_convert"])
    if "os" not in r["loaders"]["pickle"]["error"]:
        fail("prefix_global.safetensors", "pickle.load did not look the name up in os: %s" % r["loaders"]["pickle"])
    r = record["prefix_string.safetensors"]
    if not (r["loaders"]["pickle"]["canary"] and r["loaders"]["np_load_pickle"]["canary"]):
        fail("prefix_string.safetensors", "the payload did not run under pickle.load / np.load: the test file "
             "is not what it claims (%s)" % r["loaders"])
    if r["loaders"]["torch_weights_only"]["canary"]:
        fail("prefix_string.safetensors", "torch.load(weights_only=True) ran the canary")
    if r["safe_convert"]["exit"] == 0:
        fail("prefix_string.safetensors", "converted, though pickle.load runs code from it")
    r = record["clean.bin.index.json"]
    if r["safe_convert"]["format"] != "hf_index" or r["safe_convert"]["exit"] != 3 or not r["loaders"]["json"]["ok"]:
        fail("clean.bin.index.json", "not read as an index (alone: exit 3): %s" % r)
    r = record["tar_polyglot.bin.index.json"]
    if not r["safe_convert"]["polyglot"] or r["safe_convert"]["exit"] == 0:
        fail("tar_polyglot.bin.index.json", "not refused as a polyglot: %s" % r["safe_convert"])
    if not r["loaders"]["json"]["ok"]:
        fail("tar_polyglot.bin.index.json", "json.load does not read it: %s" % r["loaders"]["json"])

    for f in failures:
        print("FAIL", f)
    print("%d files, %d failures" % (len(files), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
