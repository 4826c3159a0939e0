"""Large-file linearity: s/GiB and peak RSS of a big checkpoint against a 1 GiB one.

Used by bench.py --linearity-gib N (not a test). Both checkpoints are
written by torch_zip (the layout of torch.save, in constant memory) with the
same 128 MiB float32 tensors (each a fixed random buffer with its first
element set to its index), so the only difference is their number. Input and
output are on the disk file system of --linearity-dir (tmpfs cannot hold both
at 16 GiB). For each size, per round: `sync`, `cp` of the input to the same
directory, `sync`, `safe-convert --no-sync --json`; the copy and the output are
deleted after each run. With durable=True both are made durable instead (`cp`
then `sync FILE`; safe-convert's default fsync): on a disk whose write-back
cannot absorb the big output, only that compares the sizes on equal terms. Checks: the 1 GiB file loads with torch.load with
every tensor's bytes as written, and each .safemodel's tensors have the
generator's SHA-256, dtype and shape (tests/tools/safemodel_reader.py).
"""
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np

import big_checkpoint
import torch_zip

MIB = 1 << 20
TENSOR_MIB = 128


def make(path, gib):
    """A torch_zip checkpoint of gib GiB in 128 MiB tensors; returns the expected tensors."""
    rows = TENSOR_MIB * MIB // 4 // 1024
    shapes = {"layers.%03d.weight" % i: (rows, 1024) for i in range(gib * 1024 // TENSOR_MIB)}
    base = np.random.default_rng(15).random(rows * 1024, dtype=np.float32)

    def fill(i, name, nbytes):
        base[0] = i
        yield memoryview(base).cast("B")

    digests = torch_zip.write(path, shapes, fill)
    return {n: {"dtype": "f32", "shape": list(shapes[n]), "sha256": d} for n, d in digests.items()}


def settle(src, cold):
    """Before a timed run: `sync` (no writeback of earlier runs left pending); then, if cold,
    drop src's own pages from the page cache (only that file's; nothing else is dropped),
    so that a 1 GiB input is read from the disk as a 16 GiB one must be; if warm, read src
    once, so that all of it is in the page cache (as a file just downloaded or hashed would
    be: the run before, cp's copy, may have pushed part of a large input out)."""
    subprocess.run(["sync"], check=True)
    fd = os.open(src, os.O_RDONLY)
    try:
        if cold:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        else:
            while os.read(fd, 16 << 20):
                pass
    finally:
        os.close(fd)


def measure(bin_dir, src, runs, cold, durable):
    """Interleaved cp and safe-convert runs on src's file system: [(cp wall, cp CPU), ...],
    [(wall, CPU, worker RSS, parent RSS), ...], and the last output's path."""
    out = os.path.splitext(src)[0] + ".safemodel"
    cps, convs = [], []
    for _ in range(runs):
        if os.path.exists(out):  # never input + output + copy on the disk at once
            os.unlink(out)
        settle(src, cold)
        cps.append(big_checkpoint.copy_time(src, out + ".cp", sync=durable))
        settle(src, cold)
        wall, rep = big_checkpoint.convert(bin_dir, src, out, sync=durable)
        convs.append((wall, rep["cpu_total_seconds"], rep["worker"]["max_rss_bytes"],
                      rep["parent_max_rss_bytes"]))
    return cps, convs, out


def one_size(bin_dir, workdir, gib, runs, verify_load, cold, durable):
    """Generates, measures, checks and deletes a gib GiB checkpoint: (cps, convs, bytes, tensors)."""
    src = os.path.join(workdir, "lin_%dgib.pt" % gib)
    try:
        expected = make(src, gib)
        size = os.path.getsize(src)
        cps, convs, out = measure(bin_dir, src, runs, cold, durable)
        if verify_load:
            if big_checkpoint.loader_digests("torch", src) != expected:
                sys.exit("torch.load of %s differs from what was written" % src)
        big_checkpoint.check_tensors(out, expected)  # exits if any tensor differs
        return cps, convs, size, len(expected)
    finally:
        for p in (src, os.path.splitext(src)[0] + ".safemodel"):
            if os.path.exists(p):
                os.unlink(p)


def summary(cps, convs, size, tensors, checked):
    med = statistics.median
    return {"cp_s": med(c[0] for c in cps), "cp_cpu_s": med(c[1] for c in cps),
            "sc_s": med(c[0] for c in convs), "sc_cpu_s": med(c[1] for c in convs),
            "worker_rss": max(c[2] for c in convs), "parent_rss": max(c[3] for c in convs),
            "peak_rss": max(c[2] + c[3] for c in convs), "bytes": size, "tensors": tensors,
            "runs": len(convs), "checked": checked}


def walls(cps, convs):
    return "; ".join("%.2f / %.2f" % (c[0], v[0]) for c, v in zip(cps, convs))


def print_runs(workdir, cold, durable, rows):
    """The linearity table: one row per size."""
    with open("/proc/meminfo") as f:
        ram = int(f.readline().split()[1]) / 2**20
    fs = subprocess.run(["stat", "-f", "-c", "%T", workdir], capture_output=True, text=True).stdout.strip()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print("\nlinearity: torch.save-layout zip of %d MiB float32 tensors (tests/bench/torch_zip.py), input "
          "and output in %s (%s); per round `sync`%s, %s; the 1 GiB rounds half before and half after "
          "the big one; medians; RAM %.0f GiB (an input larger than the free page cache is read from the "
          "disk, by cp as well); load average at the end: %s"
          % (TENSOR_MIB, workdir, fs,
             " + the input's pages dropped (posix_fadvise DONTNEED: a cold read)" if cold
             else " + the input read once (all of it in the page cache: a warm read)",
             "cp + `sync FILE`, the same, safe-convert (its fsync): both outputs durable" if durable
             else "cp, the same, safe-convert --no-sync (the output is left in the page cache, not fsynced, "
                  "as cp's)", ram, load))
    print("| GiB | tensors | runs | safe-convert s/GiB | cp s/GiB | x cp | CPU s/GiB | cp CPU s/GiB "
          "| worker peak MiB | parent peak MiB | peak MiB (sum) | tensors checked against |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gib = r["bytes"] / 2**30
        print("| %.2f | %d | %d | %.3f | %.3f | %.2f | %.3f | %.3f | %.0f | %.0f | %.0f | %s |"
              % (gib, r["tensors"], r["runs"], r["sc_s"] / gib, r["cp_s"] / gib, r["sc_s"] / r["cp_s"],
                 r["sc_cpu_s"] / gib, r["cp_cpu_s"] / gib, r["worker_rss"] / MIB, r["parent_rss"] / MIB,
                 r["peak_rss"] / MIB, r["checked"]))


def run(bin_dir, workdir, big_gib, runs_small, runs_big, cold=True, durable=False):
    """Converts a 1 GiB and a big_gib GiB checkpoint; prints the comparison."""
    os.makedirs(workdir, exist_ok=True)
    torch_zip.template_check(workdir)
    need = 2 * big_gib * 2**30 + 2**30
    if shutil.disk_usage(workdir).free < need:
        sys.exit("%s: %.1f GiB free, the linearity case needs %.1f GiB"
                 % (workdir, shutil.disk_usage(workdir).free / 2**30, need / 2**30))
    # The 1 GiB runs bracket the big one in time (half before, half after),
    # so that both see the same phases of the machine's load.
    before = one_size(bin_dir, workdir, 1, (runs_small + 1) // 2, True, cold, durable)
    big = one_size(bin_dir, workdir, big_gib, runs_big, False, cold, durable)
    after = ([], [], 0, 0)
    if runs_small > 1:
        after = one_size(bin_dir, workdir, 1, runs_small // 2, True, cold, durable)
    rows = [summary(before[0] + after[0], before[1] + after[1], before[2], before[3],
                    "torch.load + .safemodel"),
            summary(*big, ".safemodel")]
    print_runs(workdir, cold, durable, rows)
    print("every run, wall s (cp / safe-convert): 1 GiB %s; %d GiB %s"
          % (walls(before[0] + after[0], before[1] + after[1]), big_gib, walls(big[0], big[1])))
    lo, hi = rows
    per = [r["sc_s"] / (r["bytes"] / 2**30) for r in rows]
    print("%d GiB against 1 GiB: s/GiB ratio %.2f (target <= 1.10), cp's s/GiB ratio %.2f, x cp %.2f against "
          "%.2f, CPU s/GiB ratio %.2f; peak RSS %.0f MiB against %.0f MiB (target: the same)"
          % (big_gib, per[1] / per[0], (hi["cp_s"] / hi["bytes"]) / (lo["cp_s"] / lo["bytes"]),
             hi["sc_s"] / hi["cp_s"], lo["sc_s"] / lo["cp_s"],
             (hi["sc_cpu_s"] / hi["bytes"]) / (lo["sc_cpu_s"] / lo["bytes"]),
             hi["peak_rss"] / MIB, lo["peak_rss"] / MIB))
