#!/usr/bin/python3
"""Conversion benchmarks (not part of the test suite: timing belongs here).

  tests/bench/bench.py BIN_DIR [--size-mib N] [--runs N] [--workdir DIR]

For each input it reports the median wall time of `safe-convert` over --runs
runs, throughput, the worker's and the parent's peak RSS (from the JSON
report), and, for scale, `cp` of the same file and numpy/h5py/torch reading it.
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


def convert(bin_dir, src, dst, sync):
    # Through a forking shell: a process started straight from this (large)
    # Python process would inherit its peak RSS in the kernel's accounting.
    # --force: every run after the first replaces the previous output.
    args = ["/bin/sh", "-c", '"$0" "$@"; exit $?', os.path.join(bin_dir, "safe-convert"), src, dst,
            "--json", "--force"] + ([] if sync else ["--no-sync"])
    t = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t
    report = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
    return wall, p.returncode, report


def median_time(fn, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peer_read(kind, path):
    if kind == "npz":
        with np.load(path) as z:
            for k in z.files:
                z[k].sum()
    elif kind == "npy":
        np.load(path).sum()
    elif kind == "h5py":
        import h5py
        with h5py.File(path, "r") as f:
            for k in f:
                f[k]["kernel:0"][()].sum()
    elif kind == "torch":
        import torch
        for v in torch.load(path, weights_only=True).values():
            v.sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", default="/tmp/safemodel-bench")
    ap.add_argument("--outdir", default=None,
                    help="where outputs go (default: workdir); /dev/shm takes disk writeback out")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    if a.outdir:
        os.makedirs(a.outdir, exist_ok=True)
    inputs, extra = make_inputs(a.workdir, a.size_mib)
    rows = []
    cases = [(name, path, "npz" if path.endswith(".npz") else "npy") for name, path in inputs.items()]
    cases += [(name, path, kind) for name, (path, kind) in extra.items()]
    for name, path, kind in cases:
        size = os.path.getsize(path)
        dst = os.path.join(a.outdir or a.workdir, name + ".safemodel")
        for sync in (False, True):
            walls, rss_w, rss_p, ok = [], [], [], True
            for _ in range(a.runs):
                w, rc, rep = convert(a.bin_dir, path, dst, sync)
                ok = ok and rc == 0
                walls.append(w)
                rss_w.append(rep.get("worker", {}).get("max_rss_bytes", 0))
                rss_p.append(rep.get("parent_max_rss_bytes", 0))
            med = statistics.median(walls)
            rows.append((name + (" +fsync" if sync else ""), size, med, size / med / 1e9,
                         max(rss_w) / 2**20, max(rss_p) / 2**20, ok))
        cp = median_time(lambda: subprocess.run(["cp", path, dst + ".cp"], check=True), a.runs)
        peer = median_time(lambda: peer_read(kind, path), a.runs)
        rows.append(("  cp (same file)", size, cp, size / cp / 1e9, 0, 0, True))
        rows.append(("  %s read all (Python)" % kind, size, peer, size / peer / 1e9, 0, 0, True))
        os.unlink(dst + ".cp")
        os.unlink(dst)
    print("%-32s %10s %9s %8s %12s %12s %s" % ("case", "MiB", "median s", "GB/s", "worker MiB", "parent MiB", "ok"))
    for r in rows:
        print("%-32s %10.0f %9.3f %8.2f %12.0f %12.0f %s" % (r[0], r[1] / 2**20, r[2], r[3], r[4], r[5], r[6]))


if __name__ == "__main__":
    sys.exit(main())
