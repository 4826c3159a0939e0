"""Variants where a loader looks a name up differently: torch record names
that differ in case (its zip lookup ignores case), int and str storage keys,
duplicate, NUL-cut and case-folded zip member names, npz names whose members
np.load confuses, local/central name mismatches, bad CRCs, short records,
legacy torch stream tricks (issue 8 found case 5; LOADERS.md section 9,
cases 7-13, 18)."""
import io
import struct
import zipfile
import zlib

import numpy as np

from common import (BUILD, EMPTY_TUPLE, MARK, NEWFALSE, REDUCE, SETITEMS, STOP, TUPLE, TUPLE1,
                    binint, canary_pickle, glob, proto, read_fixture, sbu, variant, write,
                    zip_bytes)


def npy(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def rebuild(key_ops, numel):
    """_rebuild_tensor_v2(persistent_load(('storage', FloatStorage, key,
    'cpu', numel)), 0, (numel,), (1,), False, OrderedDict())."""
    pid = (MARK + sbu("storage") + glob("torch", "FloatStorage") + key_ops + sbu("cpu") +
           binint(numel) + TUPLE + b"Q")
    return (glob("torch._utils", "_rebuild_tensor_v2") + MARK + pid + binint(0) + binint(numel) +
            TUPLE1 + binint(1) + TUPLE1 + NEWFALSE + glob("collections", "OrderedDict") +
            EMPTY_TUPLE + REDUCE + TUPLE + REDUCE)


def state_dict(entries):
    """entries: list of (name, tensor ops)."""
    return (proto(2) + glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + MARK +
            b"".join(sbu(n) + ops for n, ops in entries) + SETITEMS + STOP)


def torch_zip(pkl, records, folder="archive", extra=()):
    return zip_bytes([(folder + "/data.pkl", pkl)] +
                     [(folder + "/data/" + k, v) for k, v in records] +
                     [(folder + "/version", b"3\n")] + list(extra))


def floats(rng, n):
    return np.array([rng.random() for _ in range(n)], np.float32).tobytes()


def generate(rng, outdir):
    out = []
    # Issue 8 #5: storage keys 'a' and 'A' (records data/a and data/A).
    pkl = state_dict([("w1", rebuild(sbu("a"), 4)), ("w2", rebuild(sbu("A"), 4))])
    data = torch_zip(pkl, [("a", floats(rng, 4)), ("A", floats(rng, 4))])
    out.append(variant("torch_keys_differ_in_case", write(outdir, "case_keys.pt", data), "torch",
                       "refuse", "issue 8 #5"))
    # The same keys, one record: torch serves data/a for 'A'.
    pkl = state_dict([("w1", rebuild(sbu("a"), 4)), ("w2", rebuild(sbu("A"), 4))])
    data = torch_zip(pkl, [("a", floats(rng, 4))])
    out.append(variant("torch_key_case_one_record", write(outdir, "case_one.pt", data), "torch",
                       "refuse"))
    # data.pkl and DATA.pkl: zipfile sees two members, torch one.
    clean = state_dict([("w", rebuild(sbu("0"), 4))])
    data = zip_bytes([("archive/data.pkl", clean), ("archive/DATA.pkl", canary_pickle()),
                      ("archive/data/0", floats(rng, 4)), ("archive/version", b"3\n")])
    out.append(variant("torch_data_pkl_case", write(outdir, "data_case.pt", data), "torch", "refuse"))
    # int key 0 and str key '0': one record, two storages to torch.
    pkl = state_dict([("w1", rebuild(binint(0), 4)), ("w2", rebuild(sbu("0"), 4))])
    data = torch_zip(pkl, [("0", floats(rng, 4))])
    out.append(variant("torch_int_and_str_key", write(outdir, "int_key.pt", data), "torch",
                       "refuse", "issue 8 #5"))
    # A clean hand-built checkpoint: converted, read identically.
    pkl = state_dict([("w1", rebuild(sbu("0"), 4)), ("w2", rebuild(sbu("1"), 4))])
    data = torch_zip(pkl, [("0", floats(rng, 4)), ("1", floats(rng, 4))])
    out.append(variant("torch_hand_built", write(outdir, "hand.pt", data), "torch", "convert"))
    # Duplicate record, local/central name mismatch, bad CRC, short record.
    data = torch_zip(pkl, [("0", floats(rng, 4)), ("0", floats(rng, 4)), ("1", floats(rng, 4))])
    out.append(variant("torch_duplicate_record", write(outdir, "dup.pt", data), "torch", "refuse",
                       "LOADERS case 8"))
    good = torch_zip(pkl, [("0", floats(rng, 4)), ("1", floats(rng, 4))])
    local = good.index(b"archive/data/1")
    data = good[:local] + b"archive/data/X" + good[local + 14:]
    out.append(variant("torch_local_name_differs", write(outdir, "local_name.pt", data), "torch",
                       "refuse", "LOADERS case 11"))
    pos = good.index(b"archive/data/0") + len("archive/data/0")
    data = good[:pos] + bytes([good[pos] ^ 0xFF]) + good[pos + 1:]
    out.append(variant("torch_bad_crc", write(outdir, "bad_crc.pt", data), "torch", "refuse",
                       "LOADERS case 11"))
    data = torch_zip(pkl, [("0", floats(rng, 2)), ("1", floats(rng, 4))])
    out.append(variant("torch_short_record", write(outdir, "short.pt", data), "torch", "refuse",
                       "LOADERS case 18"))

    a, b = np.arange(3, dtype=np.int32), np.arange(5, dtype=np.int32) * 7
    # npz members 'a' and 'a.npy' (case 7).
    out.append(variant("npz_a_and_a_npy", write(outdir, "a_a.npz",
                                                zip_bytes([("a", npy(a)), ("a.npy", npy(b))])),
                       "npz", "refuse", "LOADERS case 7"))
    # 'a.npy' and 'a.npy.npy': np.load lists 'a' and 'a.npy', and reads
    # member a.npy for both.
    v = variant("npz_a_npy_and_a_npy_npy",
                write(outdir, "a_npy_npy.npz", zip_bytes([("a.npy", npy(a)), ("a.npy.npy", npy(b))])),
                "npz", "refuse", "LOADERS case 7")
    out.append(v)
    # Names differing in case: np.load and zipfile keep both (converted).
    out.append(variant("npz_case_names", write(outdir, "case.npz",
                                               zip_bytes([("w.npy", npy(a)), ("W.npy", npy(b))])),
                       "npz", "convert"))
    # A NUL in a member name: zipfile cuts it (k\0hidden.npy lists as 'k').
    data = zip_bytes([("k.npy", npy(a)), ("kXhidden.npy", npy(b))]).replace(b"kXhidden", b"k\0hidden")
    out.append(variant("npz_nul_name", write(outdir, "nul.npz", data), "npz", "refuse",
                       "LOADERS case 10"))
    out.append(variant("npz_duplicate_member", write(outdir, "dup.npz",
                                                     zip_bytes([("x.npy", npy(a)), ("x.npy", npy(b))])),
                       "npz", "refuse", "LOADERS case 8"))
    # Member names and contents disagree (case 13).
    out.append(variant("npz_name_content_disagree",
                       write(outdir, "disagree.npz", zip_bytes([("x.npy", b"raw bytes"),
                                                                ("y.bin", npy(a))])),
                       "npz", "refuse", "LOADERS case 13"))
    # A deflated npz: converted, read identically.
    data = zip_bytes([("p.npy", npy(a)), ("q.npy", npy(b.astype(np.float64)))], zipfile.ZIP_DEFLATED)
    out.append(variant("npz_deflated", write(outdir, "deflated.npz", data), "npz", "convert"))

    # Legacy torch streams: trailing bytes (torch ignores them), a storage
    # listed twice in the key list.
    legacy = read_fixture("pickle", "torch", rng.choice(["state_dict_legacy_p2.pt",
                                                         "views_legacy.pt"]))
    out.append(variant("legacy_trailing", write(outdir, "legacy_trailing.pt",
                                                legacy + bytes(rng.randrange(256) for _ in range(9))),
                       "torch", None))
    out.append(variant("legacy_plain", write(outdir, "legacy.pt", legacy), "torch", "convert"))
    return out
