#!/usr/bin/python3
"""safe-convert batch throughput (a benchmark, not a test).

  tests/bench/batch.py BIN_DIR [--tiny N] [--large K] [--large-mib M] [--jobs 1,2] [--runs R]
                       [--workdir DIR] [--modes exec,fork]

Writes N tiny .npy files (16 float32 each, ~200 bytes) and K .npy files of
M MiB into WORKDIR (default: a fresh directory under /dev/shm, so that the
disk's writeback does not hide the converter's speed), then for each -j
value runs `safe-convert batch` on each set R times into a fresh out-dir,
with --no-sync -q, and prints the median wall time, files/s and GB/s of
input, and the CPU seconds per file of all processes (safe-convert, its
workers and zygotes: the children's rusage). --modes: "exec" (a worker
started by exec per file, the default) and "fork" (--fork-server); the runs
of the modes and -j values are interleaved round by round. Every run must
exit 0 with every input converted.
"""
import argparse
import resource
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


def run(bin_dir, src, out, jobs, mode="exec"):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [os.path.join(bin_dir, "safe-convert"), "batch", src, "-o", out, "-j", str(jobs), "--no-sync", "-q"]
    if mode == "fork":
        cmd.append("--fork-server")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        sys.exit("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr))
    with open(os.path.join(out, "results.jsonl")) as f:
        lines = [json.loads(l) for l in f]
    bad = [(l["id"], l["status"], l.get("message", "")) for l in lines if l["status"] != "converted"]
    if bad:
        sys.exit("%s: not converted: %s" % (" ".join(cmd), bad[:5]))
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
    ap.add_argument("--modes", default="exec")
    args = ap.parse_args()
    base = args.workdir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    work = tempfile.mkdtemp(prefix="safemodel-batch-bench-", dir=base)
    try:
        tiny_dir, large_dir = make_sets(work, args.tiny, args.large, args.large_mib)
        print("| set | mode | -j | files | input | median wall | files/s | GB/s | CPU ms/file |")
        print("|---|---|---|---|---|---|---|---|---|")
        modes = args.modes.split(",")
        jobs_list = [int(j) for j in args.jobs.split(",")]
        for name, src in (("tiny", tiny_dir), ("large", large_dir)):
            walls, cpus, sizes = {}, {}, {}
            for _ in range(args.runs):  # interleaved: every mode and -j once per round
                for jobs in jobs_list:
                    for mode in modes:
                        wall, files, nbytes = run(args.bin_dir, src, os.path.join(work, "out"), jobs, mode)
                        walls.setdefault((mode, jobs), []).append(wall)
                        cpus.setdefault((mode, jobs), []).append(run.cpu)
                        sizes[(mode, jobs)] = (files, nbytes)
            for jobs in jobs_list:
                for mode in modes:
                    files, nbytes = sizes[(mode, jobs)]
                    if files == 0:
                        continue
                    w = statistics.median(walls[(mode, jobs)])
                    c = statistics.median(cpus[(mode, jobs)])
                    print("| %s | %s | %d | %d | %.1f MB | %.2f s | %.1f | %.2f | %.2f |"
                          % (name, mode, jobs, files, nbytes / 1e6, w, files / w, nbytes / w / 1e9,
                             1e3 * c / files), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
