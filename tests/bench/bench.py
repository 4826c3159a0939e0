#!/usr/bin/python3
"""Conversion benchmarks (not part of the test suite: timing belongs here).

  tests/bench/bench.py BIN_DIR [--size-mib N ...] [--runs N] [--workdir DIR]
                       [--outdir DIR] [--tiny N] [--no-peers]

Prints one table. For each input kind and size, per round and interleaved
(cp, safe-convert, the Python peer, then the next round), so that they share
the machine's load: the median wall time as s/GiB and as a ratio to `cp` of
the same file to the same directory, CPU seconds of all processes, and peak
RSS (parent + worker from the JSON report; the peer's and cp's own). The
Python peers load and save as a user would without safemodel:
torch.load(weights_only=True) + torch.save, h5py read + write, np.load +
np.savez. Then the tiny-file rate: a 192-byte .npy converted --tiny times by
one loop (-j1) and by two loops at once (-j2), or by `safe-convert batch`
when the build has it. The load average is printed with the table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def make_inputs(workdir, size_mib):
    n = size_mib << 20
    rng = np.random.default_rng(0)
    out = {}
    # Eight equal float32 tensors, stored .npz (the zero-copy path).
    parts = {"t%d" % i: rng.standard_normal(n // 32, dtype=np.float32) for i in range(8)}
    out["npz_stored_8x"] = os.path.join(workdir, "big_stored.npz")
    np.savez(out["npz_stored_8x"], **parts)
    # One big-endian Fortran-order array: the conversion has to transpose and swap.
    out["npy_fortran_bigendian"] = os.path.join(workdir, "big_fortran_be.npy")
    arr = np.asfortranarray(rng.standard_normal((n // 4 // 1024, 1024), dtype=np.float32).astype(">f4"))
    np.save(out["npy_fortran_bigendian"], arr)
    # Many small tensors: per-tensor overheads.
    small = {"w%05d" % i: rng.standard_normal(256, dtype=np.float32) for i in range(20000)}
    out["npz_20000_small"] = os.path.join(workdir, "many_small.npz")
    np.savez(out["npz_20000_small"], **small)
    extra = {}
    try:
        import h5py
        path = os.path.join(workdir, "big.h5")
        # The layout Keras's save_weights writes: layer groups listed in
        # layer_names, each with its weight_names.
        with h5py.File(path, "w") as f:
            f.attrs["layer_names"] = [k.encode() for k in parts]
            for k, v in parts.items():
                g = f.create_group(k)
                g.attrs["weight_names"] = [b"kernel:0"]
                g.create_dataset("kernel:0", data=v)
        extra["h5_contiguous_8x"] = (path, "h5py")
    except ImportError:
        pass
    try:
        import torch
        path = os.path.join(workdir, "big.pt")
        torch.save({k: torch.from_numpy(v) for k, v in parts.items()}, path)
        extra["pt_zip_8x"] = (path, "torch")
    except ImportError:
        pass
    return out, extra


def run(cmd):
    """Runs cmd through a shell; returns (wall s, CPU s, peak RSS bytes, rc, stdout).

    CPU is the shell's and everything it waited for (the worker is reaped by
    safe-convert, so it is included). The peak RSS is not usable: the shell
    starts as a copy of this (large) Python process and the kernel counts
    that; safe-convert's comes from its report, a peer's from itself."""
    t = time.perf_counter()
    p = subprocess.Popen(["/bin/sh", "-c", '"$0" "$@"; exit $?'] + cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024, p.returncode, out


PEER = r"""
import sys
kind, src, dst = sys.argv[1:4]
if kind == "torch":
    import torch
    torch.save(torch.load(src, weights_only=True), dst)
elif kind == "h5py":
    import h5py
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k in f:
            g[k + "/kernel:0"] = f[k]["kernel:0"][()]
elif kind == "npz":
    import numpy as np
    with np.load(src) as z:
        np.savez(dst, **{k: z[k] for k in z.files})
elif kind == "npy":
    import numpy as np
    np.save(dst, np.load(src))
import resource
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def tiny_rate(bin_dir, work, n):
    """Conversions per second of a 192-byte .npy with one and with two loops."""
    src = os.path.join(work, "tiny.npy")
    np.save(src, np.arange(16, dtype=np.float32))
    sc = os.path.join(bin_dir, "safe-convert")
    listing = subprocess.run([sc, "--help"], capture_output=True, text=True).stdout
    has_batch = any(line.split()[:1] == ["batch"] for line in listing.splitlines())
    rates = {}
    for jobs in (1, 2):
        # Each loop converts n / jobs files to its own outputs.
        loop = ('i=0; while [ $i -lt %d ]; do "%s" "%s" "%s/tiny-$1-$i.safemodel" --no-sync -f '
                '>/dev/null || exit 1; i=$((i+1)); done' % (n // jobs, sc, src, work))
        t = time.perf_counter()
        procs = [subprocess.Popen(["/bin/sh", "-c", loop, "sh", str(j)]) for j in range(jobs)]
        ok = all(p.wait() == 0 for p in procs)
        rates["loop -j%d" % jobs] = (n // jobs * jobs / (time.perf_counter() - t), ok)
    if has_batch:
        # `safe-convert batch` (another branch) is not measured here yet: its
        # rate belongs beside the loops' once its command line is settled.
        print("note: this build has `safe-convert batch`; its rate is not measured by this script")
    for f in os.listdir(work):
        if f.startswith("tiny-"):
            os.unlink(os.path.join(work, f))
    return rates


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("--size-mib", type=int, nargs="+", default=[1024])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", default="/tmp/safemodel-bench")
    ap.add_argument("--outdir", default=None,
                    help="where outputs go (default: workdir); /dev/shm takes disk writeback out")
    ap.add_argument("--tiny", type=int, default=200, help="tiny conversions per rate (0: none)")
    ap.add_argument("--no-peers", action="store_true", help="skip the Python peers")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    outdir = a.outdir or a.workdir
    os.makedirs(outdir, exist_ok=True)
    sc = os.path.join(a.bin_dir, "safe-convert")
    rows = []
    for size_mib in a.size_mib:
        inputs, extra = make_inputs(a.workdir, size_mib)
        cases = [(n, p, "npz" if p.endswith(".npz") else "npy") for n, p in inputs.items()]
        cases += [(n, p, kind) for n, (p, kind) in extra.items()]
        for name, path, kind in cases:
            size = os.path.getsize(path)
            dst = os.path.join(outdir, name + ".safemodel")
            peer_dst = os.path.join(outdir, name + ".peer" + os.path.splitext(path)[1])
            m = {"cp": [], "safe-convert": [], "peer": []}
            ok = True
            for _ in range(a.runs):
                w, c, _, rc, _ = run(["cp", path, dst + ".cp"])
                m["cp"].append((w, c, float("nan")))  # cp's RSS is not of interest
                os.unlink(dst + ".cp")
                w, c, r, rc, out = run([sc, path, dst, "--json", "--force", "--no-sync"])
                rep = json.loads(out) if out.strip().startswith(b"{") else {}
                ok = ok and rc == 0
                rss = rep.get("worker", {}).get("max_rss_bytes", 0) + rep.get("parent_max_rss_bytes", 0)
                m["safe-convert"].append((w, c, rss))
                os.unlink(dst) if os.path.exists(dst) else None
                if not a.no_peers:
                    # Its own peak RSS, which it prints: the shell's would include
                    # this process's (the shell starts as a copy of it).
                    w, c, _, rc, out = run(["/usr/bin/python3", "-c", PEER, kind, path, peer_dst])
                    m["peer"].append((w, c, int(out.split()[-1])) if rc == 0 else (float("nan"),) * 3)
                    if os.path.exists(peer_dst):
                        os.unlink(peer_dst)
            cp_wall = statistics.median(x[0] for x in m["cp"])
            for who, label in (("safe-convert", "safe-convert"), ("cp", "cp"),
                               ("peer", "Python %s load + save" % kind)):
                if not m[who]:
                    continue
                wall = statistics.median(x[0] for x in m[who])
                cpu = statistics.median(x[1] for x in m[who])
                rss = max(x[2] for x in m[who])
                rows.append((name if who == "safe-convert" else "", size, label, wall, wall / cp_wall,
                             cpu, rss, ok if who == "safe-convert" else True))
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print("machine: %s, %d CPUs; load average at the end: %s; %d runs each, medians; outputs in %s"
          % (os.uname().release, os.cpu_count(), load, a.runs, outdir))
    print("| input | MiB | program | s/GiB | x cp | CPU s | peak RSS MiB | ok |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %.0f | %s | %.3f | %.2f | %.2f | %s | %s |" % (
            r[0], r[1] / 2**20, r[2], r[3] / (r[1] / 2**30), r[4], r[5],
            "" if r[6] != r[6] else "%.0f" % (r[6] / 2**20), "yes" if r[7] else "NO"))
    if a.tiny:
        for label, (rate, ok) in tiny_rate(a.bin_dir, outdir, a.tiny).items():
            print("tiny .npy (192 B), %s: %.0f files/s%s" % (label, rate, "" if ok else " (FAILED)"))


if __name__ == "__main__":
    sys.exit(main())
