#!/usr/bin/python3
"""An independent .safemodel reader, written from proto/FORMAT.md alone (it
does not use the .proto file or a protobuf library), to show that the spec is
complete. Usage: safemodel_reader.py FILE

Validates every rule of FORMAT.md section 9 (and, for SHA-256 files, every
digest), then prints JSON: {"tensors": {name: {dtype, shape, sha256}},
"architecture": ..., "metadata": ..., "provenance": {...}}. Exits 1 with a
message on the first violated rule."""
import hashlib
import json
import mmap
import struct
import sys

MAGIC = b"\x89SFM\r\n\x1a\n"
DTYPES = {1: ("bool", 1), 2: ("u8", 1), 3: ("i8", 1), 4: ("u16", 2), 5: ("i16", 2), 6: ("u32", 4),
          7: ("i32", 4), 8: ("u64", 8), 9: ("i64", 8), 10: ("f16", 2), 11: ("bf16", 2),
          12: ("f32", 4), 13: ("f64", 8), 14: ("c64", 8), 15: ("c128", 16), 16: ("f8_e4m3fn", 1),
          17: ("f8_e5m2", 1), 18: ("f8_e4m3fnuz", 1), 19: ("f8_e5m2fnuz", 1), 20: ("f8_e8m0fnu", 1)}
LIMIT = 1 << 62


class Invalid(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Invalid(msg)


def fields(buf):
    """Decodes one protobuf message: a list of (field number, wire type, value)."""
    out, pos = [], 0
    def varint():
        nonlocal pos
        v, shift = 0, 0
        while True:
            check(pos < len(buf) and shift < 70, "truncated varint")
            b = buf[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return v
    while pos < len(buf):
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            out.append((num, wt, varint()))
        elif wt == 1:
            check(pos + 8 <= len(buf), "truncated fixed64")
            out.append((num, wt, buf[pos:pos + 8]))
            pos += 8
        elif wt == 2:
            n = varint()
            check(pos + n <= len(buf), "truncated length-delimited field")
            out.append((num, wt, buf[pos:pos + n]))
            pos += n
        elif wt == 5:
            check(pos + 4 <= len(buf), "truncated fixed32")
            out.append((num, wt, buf[pos:pos + 4]))
            pos += 4
        else:
            raise Invalid("bad wire type %d" % wt)
    return out


def scalar(msg, num, default=0):
    vals = [v for n, w, v in msg if n == num]
    return vals[-1] if vals else default


def repeated_varints(msg, num):
    out = []
    for n, w, v in msg:
        if n != num:
            continue
        if w == 0:
            out.append(v)
        else:  # packed
            pos = 0
            while pos < len(v):
                x, shift = 0, 0
                while True:
                    b = v[pos]
                    pos += 1
                    x |= (b & 0x7F) << shift
                    shift += 7
                    if b < 0x80:
                        break
                out.append(x)
    return out


def text(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("text is not UTF-8")


def value(buf):
    """A Value tree, decoded iteratively with the depth and node caps."""
    root = {}
    work = [(buf, root, "v", 1)]
    nodes = 0
    while work:
        b, parent, key, depth = work.pop()
        nodes += 1
        check(nodes <= 1_000_000 and depth <= 64, "value tree exceeds the depth or node limit")
        msg = fields(b)
        kind = msg[-1] if msg else None
        out = None
        if kind is None or kind[0] == 1:
            out = None
        elif kind[0] == 2:
            out = bool(kind[2])
        elif kind[0] == 3:
            z = kind[2]
            out = (z >> 1) ^ -(z & 1)
        elif kind[0] == 4:
            out = struct.unpack("<d", kind[2])[0]
        elif kind[0] == 5:
            out = text(kind[2])
        elif kind[0] == 6:
            out = {"$bytes": kind[2].hex()}
        elif kind[0] == 7:
            items = [v for n, w, v in fields(kind[2]) if n == 1]
            out = [None] * len(items)
            for i, item in enumerate(items):
                work.append((item, out, i, depth + 1))
        elif kind[0] == 8:
            out = {}
            for n, w, entry in fields(kind[2]):
                e = fields(entry)
                k = text(scalar(e, 1, b""))
                check(k not in out, "duplicate map key %r" % k)
                out[k] = None
                work.append((scalar(e, 2, b""), out, k, depth + 1))
        parent[key] = out
    return root["v"]


def align_up(v, a):
    return (v + a - 1) // a * a


def read(path):
    # Mapped, not read: a model of many GiB is hashed one tensor at a time.
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if f.seek(0, 2) else b""
    size = len(data)
    check(size >= 64, "shorter than the prefix")
    check(data[:8] == MAGIC, "bad magic")
    major, minor, flags = struct.unpack_from("<HHI", data, 8)
    hoff, hlen, doff, dlen, toff, tlen = struct.unpack_from("<6Q", data, 16)
    check(major == 1, "unknown major version")
    check(flags == 0 and hoff == 64, "bad flags or header_off")
    check(hlen <= 512 << 20 and tlen <= 128 << 20, "header or trailer too large")
    check(all(x < LIMIT for x in (hlen, doff, dlen, toff, tlen)), "offset too large")
    check(doff == align_up(64 + hlen, 4096), "data_off not canonical")
    check(toff == doff + dlen and toff + tlen == size, "regions do not cover the file")
    check(data[64 + hlen:doff] == b"\0" * (doff - 64 - hlen), "header padding not zero")

    header = fields(data[64:64 + hlen])
    check(scalar(header, 1) == major and scalar(header, 2) == minor, "header version mismatch")
    algo = scalar(header, 7)
    check(algo in (1, 2), "unknown digest algorithm")
    tensors = []
    for n, w, t in header:
        if n != 3:
            continue
        f = fields(t)
        name = text(scalar(f, 1, b""))
        dtype = scalar(f, 2)
        shape = repeated_varints(f, 3)
        check(dtype in DTYPES, "unknown dtype %d" % dtype)
        check(0 < len(name.encode()) <= 4096 and "\0" not in name, "bad name")
        check(len(shape) <= 32, "rank too large")
        nbytes = DTYPES[dtype][1]
        for d in shape:
            nbytes *= d
        check(nbytes < LIMIT, "tensor too large")
        src = [v for n, w, v in f if n == 7]  # optional: presence is the field's
        tensors.append({"name": name, "dtype": dtype, "shape": shape, "offset": scalar(f, 4),
                        "nbytes": scalar(f, 5), "alias_of": text(scalar(f, 6, b"")), "size": nbytes,
                        "source_index": src[-1] if src else None})
    check(len(tensors) <= 2_000_000, "too many tensors")
    indices = [t["source_index"] for t in tensors]
    if any(i is not None for i in indices):  # section 4: on all or none, a permutation
        check(None not in indices and sorted(indices) == list(range(len(tensors))),
              "source_index is not a permutation of 0..n-1")
    names = [t["name"].encode() for t in tensors]
    check(all(a < b for a, b in zip(names, names[1:])), "names not sorted and unique")
    by_name = {t["name"]: t for t in tensors}
    cursor = 0
    for t in tensors:
        if t["alias_of"]:
            target = by_name.get(t["alias_of"])
            check(target is not None and not target["alias_of"], "bad alias target")
            check(target["dtype"] == t["dtype"] and target["shape"] == t["shape"], "alias mismatch")
            check(t["offset"] == 0 and t["nbytes"] == 0, "alias with bytes")
            continue
        check(t["nbytes"] == t["size"], "nbytes mismatch")
        off = align_up(cursor, 4096 if t["nbytes"] >= 1 << 20 else 64)
        check(t["offset"] == off, "offset of %s is not canonical" % t["name"])
        cursor = off + t["nbytes"]
    check(cursor == dlen, "data_len mismatch")

    arch = value(scalar(header, 4, b"")) if any(n == 4 for n, _, _ in header) else None
    meta = value(scalar(header, 5, b"")) if any(n == 5 for n, _, _ in header) else None
    prov = fields(scalar(header, 6, b""))
    sha_in = scalar(prov, 2, b"")
    check(len(sha_in) == 32, "input_sha256 is not 32 bytes")
    findings = []
    for n, w, f in prov:
        if n == 5:
            ff = fields(f)
            sev = text(scalar(ff, 1, b""))
            check(sev in ("refused", "dropped", "note"), "bad finding severity")
            findings.append({"severity": sev, "rule": text(scalar(ff, 2, b"")),
                             "location": text(scalar(ff, 3, b""))})

    trailer = fields(data[toff:toff + tlen])
    check(scalar(trailer, 1) == algo, "trailer algorithm mismatch")
    digests = [v for n, w, v in trailer if n == 2]
    check(len(digests) == len(tensors), "digest count mismatch")
    dsize = 16 if algo == 1 else 32
    check(len(scalar(trailer, 3, b"")) == dsize, "bad header digest size")
    out = {}
    cursor = doff
    for t, d in zip(tensors, digests):
        src = by_name[t["alias_of"]] if t["alias_of"] else t
        start = doff + src["offset"]
        body = data[start:start + src["nbytes"]]
        check(len(d) == (0 if t["alias_of"] else dsize), "bad digest size")
        if not t["alias_of"]:
            check(data[cursor:start] == b"\0" * (start - cursor), "padding not zero")
            cursor = start + len(body)
            if t["dtype"] == 1:
                check(body.strip(b"\0\1") == b"" and max(body, default=0) <= 1,
                      "bool tensor %s holds a byte other than 0 or 1" % t["name"])
            if algo == 2:
                check(hashlib.sha256(body).digest() == d, "digest mismatch for %s" % t["name"])
        out[t["name"]] = {"dtype": DTYPES[t["dtype"]][0], "shape": t["shape"],
                          "sha256": hashlib.sha256(body).hexdigest(), "alias_of": t["alias_of"]}
    if algo == 2:
        check(hashlib.sha256(data[:64 + hlen]).digest() == scalar(trailer, 3, b""), "header digest mismatch")
    order = sorted(tensors, key=lambda t: t["source_index"]) if tensors and indices[0] is not None else tensors
    return {"tensors": out, "source_order": [t["name"] for t in order],
            "architecture": arch, "metadata": meta,
            "provenance": {"source_format": text(scalar(prov, 1, b"")), "input_sha256": sha_in.hex(),
                           "input_size": scalar(prov, 3), "findings": findings}}


if __name__ == "__main__":
    try:
        json.dump(read(sys.argv[1]), sys.stdout, sort_keys=True)
    except Invalid as e:
        print("invalid: %s" % e, file=sys.stderr)
        sys.exit(1)
