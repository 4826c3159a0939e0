#!/usr/bin/python3
"""Converts checkpoints over 4 GiB end to end and checks every tensor against
the real loader (not part of the test suite: it writes tens of GiB; run it
before each release).

  tests/bench/big_checkpoint.py BIN_DIR [--workdir DIR] [--tensors 32]
      [--tensor-mib 256] [--runs 1] [--npz-mib 4608] [--keep]

1. torch.save of --tensors float32 tensors of --tensor-mib MiB each (default
   32 x 256 MiB: an 8 GiB checkpoint, most of whose members sit beyond
   4 GiB, in torch's zip64 layout), converted with BIN_DIR/safe-convert.
   Every tensor of the .safemodel (read by tests/tools/safemodel_reader.py,
   the independent reader) must have the SHA-256, dtype and shape of the same
   tensor from torch.load (in a child process: it holds the whole model).
   Reported: the conversion's wall time against `cp` of the same file on the
   same disk, with and without fsync (`cp` then `sync FILE`), and the peak RSS
   of the worker and of the parent (from the JSON report).
2. np.savez of --npz-mib MiB in 512 MiB arrays (numpy's force_zip64 layout,
   the last members beyond 4 GiB), converted and checked against np.load the
   same way. --npz-mib 0 skips it.

Every file is written under --workdir and deleted at the end (unless
--keep). Disk needed: about three times the checkpoint size at the peak
(generation scratch, checkpoint, output).
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import safemodel_reader  # noqa: E402

MIB = 1 << 20


def fill_scratch(path, count, elems, seed):
    """count x elems float32 random values in a raw file, one tensor at a time."""
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(count, elems))
    for i in range(count):
        mm[i] = np.random.default_rng(seed + i).random(elems, dtype=np.float32)
    mm.flush()
    del mm
    # Copy-on-write view: the writers read it through the page cache, so the
    # generator never holds the whole model in memory.
    return np.memmap(path, dtype=np.float32, mode="c", shape=(count, elems))


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def children_cpu():
    """User + system CPU seconds of the waited-for children (and theirs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def convert(bin_dir, src, dst, sync):
    # Through a forking shell: a process started straight from this (large)
    # Python process would inherit its peak RSS in the kernel's accounting.
    args = ["/bin/sh", "-c", '"$0" "$@"; exit $?', os.path.join(bin_dir, "safe-convert"), src, dst,
            "--json", "--force"] + ([] if sync else ["--no-sync"])
    t, cpu = time.perf_counter(), children_cpu()
    p = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t
    report = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
    if p.returncode != 0:
        sys.exit("safe-convert %s failed (exit %d): %s %s" % (src, p.returncode, p.stderr.strip(),
                                                             report.get("message", "")))
    # CPU of the whole conversion (parent, its hashing thread, the worker):
    # unlike the wall time, it does not depend on what else the machine runs.
    report["cpu_total_seconds"] = children_cpu() - cpu
    return wall, report


def copy_time(src, dst, sync):
    def run():
        subprocess.run(["cp", src, dst], check=True)
        if sync:
            subprocess.run(["sync", dst], check=True)
    cpu = children_cpu()
    wall = timed(run)
    cpu = children_cpu() - cpu
    os.unlink(dst)
    return wall, cpu


LOADER_DIGESTS = r"""
import hashlib, json, sys
kind, path = sys.argv[1], sys.argv[2]
out = {}
def put(name, arr):
    out[name] = {"dtype": {"float32": "f32"}[str(arr.dtype)], "shape": list(arr.shape),
                 "sha256": hashlib.sha256(memoryview(arr.reshape(-1))).hexdigest()}
if kind == "torch":
    import torch
    model = torch.load(path, weights_only=True)
    for name, t in model.items():
        put(name, t.contiguous().numpy())
    del model
else:
    import numpy as np
    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            put(name, np.ascontiguousarray(z[name]))
json.dump(out, sys.stdout)
"""


def loader_digests(kind, path):
    p = subprocess.run([sys.executable, "-c", LOADER_DIGESTS, kind, path], capture_output=True,
                       text=True, check=True)
    return json.loads(p.stdout)


def check_tensors(out_path, expected):
    got = safemodel_reader.read(out_path)["tensors"]
    if set(got) != set(expected):
        sys.exit("tensor names differ: %s vs %s" % (sorted(got)[:5], sorted(expected)[:5]))
    bad = [n for n in expected
           if (got[n]["sha256"], got[n]["dtype"], got[n]["shape"]) !=
           (expected[n]["sha256"], expected[n]["dtype"], expected[n]["shape"])]
    if bad:
        sys.exit("tensors differ from the loader's: %s" % bad)
    return len(expected)


def measure(bin_dir, src, out, runs):
    """Median wall times of safe-convert and cp (with and without fsync)."""
    rows = {}
    for sync in (False, True):
        walls, rss_w, rss_p, cpu, worker_cpu = [], [], [], [], []
        for _ in range(runs):
            w, rep = convert(bin_dir, src, out, sync)
            walls.append(w)
            rss_w.append(rep["worker"]["max_rss_bytes"])
            rss_p.append(rep["parent_max_rss_bytes"])
            cpu.append(rep["cpu_total_seconds"])
            worker_cpu.append(rep["worker"]["cpu_seconds"])
        cps = [copy_time(src, out + ".cp", sync) for _ in range(runs)]
        rows["fsync" if sync else "no-sync"] = {
            "safe_convert_s": statistics.median(walls), "cp_s": statistics.median(c[0] for c in cps),
            "safe_convert_cpu_s": statistics.median(cpu), "worker_cpu_s": statistics.median(worker_cpu),
            "cp_cpu_s": statistics.median(c[1] for c in cps),
            "worker_max_rss_mib": max(rss_w) / MIB, "parent_max_rss_mib": max(rss_p) / MIB}
    return rows


def torch_case(a):
    import torch

    elems = a.tensor_mib * MIB // 4
    scratch = os.path.join(a.workdir, "scratch.f32")
    src = os.path.join(a.workdir, "big.pt")
    out = os.path.join(a.workdir, "big.safemodel")
    gen = save = None
    if not (a.reuse and os.path.exists(src)):
        t = time.perf_counter()
        mm = fill_scratch(scratch, a.tensors, elems, seed=1000)
        model = {"layers.%02d.weight" % i: torch.from_numpy(mm[i]) for i in range(a.tensors)}
        gen = time.perf_counter() - t
        save = timed(lambda: torch.save(model, src))
        del model, mm
        os.unlink(scratch)
    size = os.path.getsize(src)
    rows = measure(a.bin_dir, src, out, a.runs)
    n = check_tensors(out, loader_digests("torch", src))
    result = {"case": "torch.save", "bytes": size, "tensors": n, "generate_s": gen, "torch_save_s": save,
              "all_tensors_match_torch_load": True, **rows}
    if not a.keep:
        os.unlink(src)
        os.unlink(out)
    return result


def npz_case(a):
    chunk = 512 * MIB
    count = max(1, a.npz_mib * MIB // chunk)
    scratch = os.path.join(a.workdir, "scratch_npz.f32")
    src = os.path.join(a.workdir, "big.npz")
    out = os.path.join(a.workdir, "big_npz.safemodel")
    mm = fill_scratch(scratch, count, chunk // 4, seed=2000)
    t = time.perf_counter()
    np.savez(src, **{"a%02d" % i: mm[i] for i in range(count)})
    save = time.perf_counter() - t
    del mm
    os.unlink(scratch)
    size = os.path.getsize(src)
    w, rep = convert(a.bin_dir, src, out, sync=False)
    n = check_tensors(out, loader_digests("npz", src))
    result = {"case": "np.savez", "bytes": size, "tensors": n, "np_savez_s": save,
              "all_tensors_match_np_load": True, "safe_convert_no_sync_s": w,
              "safe_convert_cpu_s": rep["cpu_total_seconds"],
              "worker_max_rss_mib": rep["worker"]["max_rss_bytes"] / MIB,
              "parent_max_rss_mib": rep["parent_max_rss_bytes"] / MIB}
    if not a.keep:
        os.unlink(src)
        os.unlink(out)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("--workdir", default="/tmp/safemodel-big-checkpoint")
    ap.add_argument("--tensors", type=int, default=32)
    ap.add_argument("--tensor-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--npz-mib", type=int, default=4608)
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--reuse", action="store_true",
                    help="use WORKDIR/big.pt from an earlier --keep run instead of generating it")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    need = 3 * a.tensors * a.tensor_mib * MIB
    free = shutil.disk_usage(a.workdir).free
    if free < need:
        sys.exit("%s has %.1f GiB free; this needs about %.1f GiB" % (a.workdir, free / 2**30, need / 2**30))
    results = []
    if a.tensors > 0:
        results.append(torch_case(a))
    if a.npz_mib > 0:
        results.append(npz_case(a))
    json.dump(results, sys.stdout, indent=2)
    print()
    for r in results:
        if r["case"] == "torch.save":
            for mode in ("no-sync", "fsync"):
                m = r[mode]
                print("| %.1f GiB `torch.save`, %d tensors (%s) | %.1f s (%.1f s CPU) | %.2f GB/s | "
                      "%.0f MiB | %.0f MiB | %.1f s (%.1f s CPU) |" %
                      (r["bytes"] / 2**30, r["tensors"], mode, m["safe_convert_s"], m["safe_convert_cpu_s"],
                       r["bytes"] / m["safe_convert_s"] / 1e9, m["worker_max_rss_mib"],
                       m["parent_max_rss_mib"], m["cp_s"], m["cp_cpu_s"]))


if __name__ == "__main__":
    sys.exit(main())
