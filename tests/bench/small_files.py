#!/usr/bin/python3
"""Small-file conversions: what starting a worker costs (not a test).

  tests/bench/small_files.py BIN_DIR [BIN_DIR ...] [--runs N] [--rounds R]

For each BIN_DIR (a build's bin/, or any directory holding safe-convert and
its workers) it prints the shared libraries each worker maps (ldd, without
the vDSO), then converts a 192-byte .npy and a 10 KiB Keras .h5 N times in a
row, R rounds, the directories taking turns so that they share the machine's
load, and prints the mean wall time per conversion of each round and which
worker converted (the report's worker.program and worker.hand_off).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
H5 = os.path.join(HERE, "..", "fixtures", "keras_h5", "big_endian.h5")


def libraries(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and "vdso" not in line]


def convert(bin_dir, src, dst, json_report=False):
    cmd = [os.path.join(bin_dir, "safe-convert"), src, dst, "--no-sync", "-f"]
    if json_report:
        cmd.append("--json")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr))
    return json.loads(r.stdout) if json_report else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dirs", nargs="+")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="safemodel-small-")
    npy = os.path.join(work, "tiny.npy")
    np.save(npy, np.arange(16, dtype=np.float32))
    out = os.path.join(work, "out.safemodel")
    for d in args.bin_dirs:
        for w in ("safemodel-worker", "safemodel-worker-hdf5"):
            p = os.path.join(d, w)
            if os.path.exists(p):
                print("%s/%s maps %d shared libraries" % (d, w, len(libraries(p))))
    with open("/proc/loadavg") as f:
        print("load average before:", f.read().split()[:3])
    for name, src in (("npy 192 B", npy), ("keras h5 10 KiB", H5)):
        for d in args.bin_dirs:
            w = convert(d, src, out, json_report=True)["worker"]
            print("%-16s %s: worker %s, hand_off %s" % (name, d, w.get("program", "(not reported)"),
                                                       w.get("hand_off", "(not reported)")))
        for r in range(args.rounds):
            for d in args.bin_dirs:
                t0 = time.perf_counter()
                for _ in range(args.runs):
                    convert(d, src, out)
                ms = (time.perf_counter() - t0) * 1000 / args.runs
                print("%-16s round %d %s: %.1f ms per conversion" % (name, r + 1, d, ms))
    with open("/proc/loadavg") as f:
        print("load average after:", f.read().split()[:3])
    for f in os.listdir(work):
        os.unlink(os.path.join(work, f))
    os.rmdir(work)


if __name__ == "__main__":
    main()
