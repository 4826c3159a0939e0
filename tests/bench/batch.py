#!/usr/bin/python3
"""safe-convert batch throughput (a benchmark, not a test).

  tests/bench/batch.py BIN_DIR [--tiny N] [--large K] [--large-mib M] [--jobs 1,2] [--runs R]
                       [--workdir DIR]

Writes N tiny .npy files (16 float32 each, ~200 bytes) and K .npy files of
M MiB into WORKDIR (default: a fresh directory under /dev/shm, so that the
disk's writeback does not hide the converter's speed), then for each -j
value runs `safe-convert batch` on each set R times into a fresh out-dir,
with --no-sync -q, and prints the median wall time, files/s and GB/s of
input. Every run must exit 0 with every input converted.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def make_sets(work, tiny, large, large_mib):
    tiny_dir, large_dir = os.path.join(work, "tiny"), os.path.join(work, "large")
    os.makedirs(tiny_dir)
    os.makedirs(large_dir)
    for i in range(tiny):
        sub = os.path.join(tiny_dir, "d%02d" % (i % 20))
        os.makedirs(sub, exist_ok=True)
        np.save(os.path.join(sub, "t%05d.npy" % i), np.arange(16, dtype=np.float32) + i)
    n = large_mib * (1 << 20) // 4
    for i in range(large):
        np.save(os.path.join(large_dir, "big%d.npy" % i), np.full(n, i, dtype=np.float32))
    return tiny_dir, large_dir


def run(bin_dir, src, out, jobs):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [os.path.join(bin_dir, "safe-convert"), "batch", src, "-o", out, "-j", str(jobs), "--no-sync", "-q"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr))
    with open(os.path.join(out, "results.jsonl")) as f:
        lines = [json.loads(l) for l in f]
    bad = [l["id"] for l in lines if l["status"] != "converted"]
    if bad:
        sys.exit("not converted: %s" % bad[:5])
    return wall, len(lines), sum(l["input"]["bytes"] for l in lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("--tiny", type=int, default=2000)
    ap.add_argument("--large", type=int, default=4)
    ap.add_argument("--large-mib", type=int, default=256)
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir")
    args = ap.parse_args()
    base = args.workdir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    work = tempfile.mkdtemp(prefix="safemodel-batch-bench-", dir=base)
    try:
        tiny_dir, large_dir = make_sets(work, args.tiny, args.large, args.large_mib)
        print("| set | -j | files | input | median wall | files/s | GB/s |")
        print("|---|---|---|---|---|---|---|")
        for name, src in (("tiny", tiny_dir), ("large", large_dir)):
            for jobs in [int(j) for j in args.jobs.split(",")]:
                walls = []
                for _ in range(args.runs):
                    wall, files, nbytes = run(args.bin_dir, src, os.path.join(work, "out"), jobs)
                    walls.append(wall)
                w = statistics.median(walls)
                print("| %s | %d | %d | %.1f MB | %.2f s | %.1f | %.2f |"
                      % (name, jobs, files, nbytes / 1e6, w, files / w, nbytes / w / 1e9), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
