"""Variants where the same bytes are two files to two loaders: tar wraps,
HDF5 user blocks, prefixes, appended data, zips after other data, in a
comment or concatenated, TorchScript members (LOADERS.md section 9, cases
1-6, 14, 19, 24, 28; issue 8 found cases 1 and 2)."""
import io
import struct
import tarfile
import zipfile

import numpy as np

from common import (binbytes, canary_call, canary_pickle, fixture, proto, read_fixture, set_tar_checksum,
                    tar_bytes, torch_legacy_tar, variant, with_user_block, write, zip_bytes, STOP)

TORCH_FIXTURES = ["state_dict_zip_p2.pt", "single_tensor.pt", "dtypes_zip.pt"]
KERAS_CLEAN = ["dtypes.h5", "functional_graph.h5", "keras3_weights.h5"]
KERAS_LAMBDA = ["bidi_lambda.h5", "lambda_in_wrapper.h5"]


def npy_bytes(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def swallow(head, body, tail=b"."):
    """A protocol-2 pickle whose one BINBYTES holds `body`, then `tail`."""
    return head + proto(2) + b"B" + struct.pack("<I", len(body)) + body + tail


def tar_pickle_polyglot(checksum=None):
    """Issue 8 #1: a tar archive whose first member name starts a pickle
    that swallows the rest of the file as one bytes object. pickle.load:
    inert bytes; torch.load(path): the tar's `storages` member, a canary.
    `checksum(sum) -> 8 bytes` writes the checksum field another way
    tarfile also accepts."""
    tar = torch_legacy_tar(canary_pickle())
    # A first member whose name field holds the pickle's opening bytes.
    head = bytearray(tar_bytes([("x", b"")])[:512])
    total = 512 + len(tar)
    opening = proto(2) + b"B" + struct.pack("<I", total - 7 - 1)
    head[0:100] = opening + b"n" * (100 - len(opening))
    block = set_tar_checksum(bytes(head))
    if checksum is not None:
        b = bytearray(block)
        b[148:156] = b" " * 8
        b[148:156] = checksum(sum(b))
        block = bytes(b)
    data = bytearray(block + tar)
    data[-1:] = STOP  # the last (zero) block is never read by tarfile
    return bytes(data)


def generate(rng, outdir):
    out = []

    out.append(variant("tar_pickle_polyglot", write(outdir, "tar_pickle.pkl", tar_pickle_polyglot()),
                       "any", "refuse", "issue 8 #1"))
    # The checksum field as tarfile's int(s, 8) also reads it.
    forms = {"spaces": lambda v: (b"  %o" % v).ljust(8, b" "),
             "0o": lambda v: (b"0o%o" % v).ljust(8, b"\0"),
             "underscore": lambda v: (lambda o: (o[:2] + b"_" + o[2:]).ljust(8, b"\0"))(b"%o" % v),
             "plus": lambda v: (b"+%o" % v).ljust(8, b"\0"),
             "base256": lambda v: b"\x80" + v.to_bytes(7, "big")}
    form = rng.choice(sorted(forms))
    out.append(variant("tar_pickle_polyglot_checksum_" + form,
                       write(outdir, "tar_pickle_%s.pkl" % form, tar_pickle_polyglot(forms[form])),
                       "any", "refuse", "issue 8 #1"))

    # Issue 8 #2: a pickle in a user block of 512 * 2^k bytes, a Keras model
    # with a Lambda after it; and the same with a clean model (exit 3).
    for lam in (True, False):
        h5 = read_fixture("keras_h5", rng.choice(KERAS_LAMBDA if lam else KERAS_CLEAN))
        block = rng.choice([512, 1024, 2048, 4096])
        body = b"\0" * (block - 7) + h5
        data = proto(2) + b"B" + struct.pack("<I", len(body)) + body + STOP
        out.append(variant("pickle_hdf5_userblock_%s_%d" % ("lambda" if lam else "clean", block),
                           write(outdir, "pickle_h5_%d_%d.pkl" % (lam, block), data), "any",
                           "refuse", "issue 8 #2"))

    # The same with a pickle whose first opcode is not one picklers write
    # first (SHORT_BINBYTES, or INST, which imports before it fails).
    h5 = read_fixture("keras_h5", rng.choice(KERAS_CLEAN))
    first = rng.choice([b"C\x00", b"\x88", b"\x8c\x00"])
    block = first + canary_call() + b"0" + b"N" + STOP
    out.append(variant("pickle_odd_first_opcode_hdf5_userblock",
                       write(outdir, "odd_first.pkl", with_user_block(block, h5, 512)), "any",
                       "refuse"))
    block = b"i" + b"safemodel_canary\nfire\n"
    out.append(variant("inst_first_hdf5_userblock",
                       write(outdir, "inst_first.pkl", with_user_block(block, h5, 512)), "any",
                       "refuse"))

    # An .npy whose array data is an HDF5 file at 1024 (np.load: u1 array;
    # h5py: the Keras model).
    h5 = read_fixture("keras_h5", rng.choice(KERAS_LAMBDA))
    hdr = npy_bytes(np.zeros(0, np.uint8))
    header_len = len(hdr)
    pad = 1024 - header_len
    blob = np.frombuffer(b"\0" * pad + h5, np.uint8)
    data = npy_bytes(blob)
    assert data[1024:1032] == b"\x89HDF\r\n\x1a\n", "npy header length changed"
    out.append(variant("npy_hdf5_userblock", write(outdir, "npy_h5.npy", data), "any", "refuse"))

    # A legit HDF5 file with a zero user block: converted, same weights.
    h5 = read_fixture("keras_h5", rng.choice(KERAS_CLEAN))
    block = rng.choice([512, 2048])
    out.append(variant("hdf5_zero_userblock_%d" % block,
                       write(outdir, "userblock_%d.h5" % block, with_user_block(b"", h5, block)),
                       "h5", "convert"))

    # Case 3: an HDF5 file inside another's user block: libhdf5 reads the
    # first signature (the inner file); so must safemodel.
    inner = read_fixture("keras_h5", rng.choice(KERAS_CLEAN))
    outer = read_fixture("keras_h5", rng.choice(KERAS_LAMBDA))
    block = 1 << max(9, (len(inner) - 1).bit_length())
    out.append(variant("hdf5_in_hdf5_userblock", write(outdir, "nested_userblock.h5",
                                                       with_user_block(inner, outer, block)),
                       "any", None, "LOADERS case 3"))

    # Case 4: a zip after a pickle prefix (the pickle swallows it); the zip's
    # data.pkl is a canary for zipfile readers.
    inner_zip = zip_bytes([("archive/data.pkl", canary_pickle()), ("archive/version", b"3\n")])
    out.append(variant("zip_after_pickle", write(outdir, "zip_after_pickle.pkl",
                                                 swallow(b"", inner_zip)), "any", "refuse",
                       "LOADERS case 4"))
    junk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 100, 1000])))
    npz = read_fixture("numpy", "stored.npz")
    out.append(variant("zip_after_junk", write(outdir, "zip_after_junk.npz", b"\x01" + junk + npz),
                       "any", "refuse", "LOADERS case 4"))

    # Case 5: a whole zip in another zip's comment, followed by two bytes so
    # that only the outer end record reaches the end of the file.
    outer_zip = read_fixture("pickle", "torch", rng.choice(TORCH_FIXTURES))
    evil = zip_bytes([("archive/data.pkl", canary_pickle()), ("archive/version", b"3\n")])
    comment = evil + b"\0\0"
    assert outer_zip[-2:] == b"\0\0"
    data = outer_zip[:-2] + struct.pack("<H", len(comment)) + comment
    out.append(variant("zip_in_comment", write(outdir, "zip_in_comment.pt", data), "any", "refuse",
                       "LOADERS case 5"))
    data = outer_zip[:-2] + struct.pack("<H", len(evil)) + evil
    out.append(variant("zip_in_comment_at_end", write(outdir, "zip_in_comment_end.pt", data), "any",
                       "refuse", "LOADERS case 5"))

    # Case 6: two zips concatenated.
    out.append(variant("concatenated_zips", write(outdir, "concat.pt", outer_zip + evil), "any",
                       "refuse", "LOADERS case 6"))

    # Appended data: torch accepts 400 trailing bytes, h5py any.
    tail = bytes(rng.randrange(256) for _ in range(rng.choice([1, 400])))
    out.append(variant("torch_zip_trailing", write(outdir, "trailing.pt", outer_zip + tail), "torch",
                       None))
    h5 = read_fixture("keras_h5", rng.choice(KERAS_CLEAN))
    out.append(variant("hdf5_trailing", write(outdir, "trailing.h5", h5 + tail), "h5", None))
    # Appended zip after an HDF5 file: zipfile reads the zip.
    out.append(variant("hdf5_then_zip", write(outdir, "h5_then_zip.h5", h5 + evil), "any",
                       "refuse"))

    # Prefixes before each kind of file.
    for fixture_path, kind in ((("numpy", "f32.npy"), "npy"), (("numpy", "stored.npz"), "npz"),
                               (("pickle", "torch", "numpy_p2.pkl"), "pickle"),
                               (("keras_h5", rng.choice(KERAS_CLEAN)), "h5")):
        n = rng.choice([1, 100, 511, 512, 1024])
        prefix = bytes(rng.randrange(256) for _ in range(n))
        out.append(variant("prefix_%d_%s" % (n, kind),
                           write(outdir, "prefix_%d.%s" % (n, kind), prefix + read_fixture(*fixture_path)),
                           "any", None))

    # Tar wraps: a checkpoint inside a tar (torch tries tar, finds no
    # `storages`); a legacy tar whose `storages` is a canary pickle; one
    # whose `storages` is a symbolic link out of the archive (case 28).
    pt = read_fixture("pickle", "torch", rng.choice(TORCH_FIXTURES))
    out.append(variant("tar_wrap", write(outdir, "wrapped.tar", tar_bytes([("model.pt", pt)])),
                       "any", "refuse"))
    out.append(variant("torch_legacy_tar_canary",
                       write(outdir, "legacy.tar", torch_legacy_tar(canary_pickle())), "any",
                       "refuse"))
    link = tar_bytes([("storages", b"", tarfile.SYMTYPE, "/etc/hostname"),
                      ("tensors", proto(2) + b"K\x00" + STOP), ("pickle", proto(2) + b"N" + STOP)])
    out.append(variant("torch_legacy_tar_symlink", write(outdir, "symlink.tar", link), "any",
                       "refuse", "LOADERS case 28"))

    # Case 19: a checkpoint plus <dir>/constants.pkl goes to torch.jit.load.
    with zipfile.ZipFile(io.BytesIO(pt)) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    folder = members[0][0].split("/")[0]
    out.append(variant("torchscript_member",
                       write(outdir, "ts.pt", zip_bytes(members + [(folder + "/constants.pkl",
                                                                    proto(2) + b")" + STOP)])),
                       "torch", "refuse", "LOADERS case 19"))

    # Case 24: no PROTO, BINBYTES whose length starts with 'Z' (joblib: bz2).
    data = b"B" + struct.pack("<I", 0x5A) + b"\0" * 0x5A + STOP
    out.append(variant("binbytes_bz_prefix", write(outdir, "bz.pkl", data), "any", None,
                       "LOADERS case 24"))
    # A pickle whose bytes object holds a canary pickle (data, not code).
    out.append(variant("pickle_of_pickle_bytes",
                       write(outdir, "nested.pkl", proto(2) + binbytes(canary_pickle()) + STOP),
                       "pickle", None))
    return out
