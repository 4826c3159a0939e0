"""Random structural mutations of every small fixture: byte flips, interesting
byte values, truncation, appended or duplicated chunks, prefixes. No
expectation: the harness only checks that whatever safe-convert converts, the
real loaders read identically and without running code. Longer runs
(--count) sample more fixtures and mutations."""
import glob
import os

from common import FIXTURES, variant, write

KINDS = {".npy": "npy", ".npz": "npz", ".pt": "torch", ".pkl": "pickle", ".joblib": "joblib",
         ".h5": "h5"}
MAX_FIXTURE = 64 << 10
PER_ROUND = 12
INTERESTING = [0x00, 0xFF, 0x7F, 0x80, ord("."), ord("N"), ord(")"), ord("("), ord("b"),
               ord("R"), ord("0"), ord("1"), ord("9"), ord("-")]


def fixtures():
    out = []
    for pattern in ("numpy/*.npy", "numpy/*.npz", "pickle/torch/*", "keras_h5/*.h5"):
        for path in sorted(glob.glob(os.path.join(FIXTURES, pattern))):
            ext = os.path.splitext(path)[1]
            if ext in KINDS and os.path.getsize(path) <= MAX_FIXTURE:
                out.append((path, KINDS[ext]))
    return out


def mutate(rng, data):
    """One random mutation; returns (description, bytes)."""
    n = len(data)
    # Headers and ends are where formats decide things.
    def position():
        region = rng.choice(["head", "tail", "any"])
        if region == "head":
            return rng.randrange(min(n, 512))
        if region == "tail":
            return n - 1 - rng.randrange(min(n, 512))
        return rng.randrange(n)
    kind = rng.choice(["flip", "set", "truncate", "append", "duplicate", "prefix"])
    b = bytearray(data)
    if kind == "flip":
        p = position()
        b[p] ^= 1 << rng.randrange(8)
        return "flip@%d" % p, bytes(b)
    if kind == "set":
        p = position()
        b[p] = rng.choice(INTERESTING)
        return "set@%d" % p, bytes(b)
    if kind == "truncate":
        p = rng.randrange(1, n)
        return "truncate@%d" % p, bytes(b[:p])
    if kind == "append":
        tail = rng.choice([b".", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))),
                           bytes(data)])
        return "append%d" % len(tail), bytes(b) + tail
    if kind == "duplicate":
        p = position()
        q = min(n, p + rng.randrange(1, 64))
        return "dup@%d+%d" % (p, q - p), bytes(b[:q]) + bytes(b[p:])
    pre = rng.choice([b"\0" * rng.choice([1, 512, 1024]), bytes(rng.randrange(256) for _ in range(8))])
    return "prefix%d" % len(pre), pre + bytes(b)


def generate(rng, outdir):
    pool = fixtures()
    out = []
    for i in range(PER_ROUND):
        path, kind = rng.choice(pool)
        with open(path, "rb") as f:
            data = f.read()
        what, mutated = mutate(rng, data)
        base = os.path.basename(path)
        name = "%s_%s" % (base, what)
        out.append(variant(name, write(outdir, "m%02d_%s" % (i, base), mutated), kind, None))
    return out
