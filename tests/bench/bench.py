#!/usr/bin/python3
"""Conversion benchmarks (not part of the test suite: timing belongs here).

  tests/bench/bench.py BIN_DIR [--size-mib N ...] [--runs N] [--workdir DIR]
                       [--outdir DIR] [--tiny N] [--many N] [--no-peers]
                       [--peer-runs N] [--linearity-gib N] [--linearity-dir DIR]
                       [--linearity-runs N] [--linearity-only] [--linearity-durable]
                       [--durable]

Prints, in one run (README.md here says what each row means):
1. A table. For each input kind and size, per round and interleaved (cp,
   safe-convert, the Python peer, then the next round), so that they share
   the machine's load: the median wall time as s/GiB, as a ratio to `cp` of
   the same file to the same directory and as microseconds per tensor, CPU
   seconds of all processes, and peak RSS (parent + worker from the JSON
   report; the peer's own). "SHA-256 floor" is a plain SHA-256 of the same
   file in this process, the work of safe-convert's hasher thread alone
   (sha256_floor); "x floor" is a wall time over it. The Python peers load
   and save as a user would without safemodel: torch.load(weights_only=True)
   + torch.save, h5py read + write, np.load + np.savez (--peer-runs of them,
   the first rounds).
   The kinds: eight equal float32 tensors as .npz, Keras-layout HDF5 and
   PyTorch zip; the same bytes as 256 PyTorch tensors each followed by one
   of 16 KiB; one big-endian Fortran-order .npy; --many small tensors
   (16 float32 each) as .npz and as a PyTorch zip.
2. The tiny-file rate: --tiny 192-byte .npy files converted by a shell loop
   of `safe-convert IN OUT` (one loop, and two at once) and by
   `safe-convert batch` at -j 1 and -j 2, a worker exec'd per file and with
   --fork-server; files/s and CPU ms per file (all processes), interleaved;
   the batch rows again for as many copies of an 11 KiB Keras .h5 (the HDF5
   worker's hand-off).
3. With --linearity-gib N: linearity.py's comparison of an N GiB and a 1 GiB
   PyTorch zip on the disk (s/GiB, ratio to cp, CPU, peak RSS).
The load average is printed with each table.
"""
import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import batch  # noqa: E402  (tests/bench/batch.py: make_sets, run)

SMALL_ELEMS = 16  # float32 elements per tensor of the many-tensor inputs (64 bytes)


def make_big(workdir, size_mib):
    """The size_mib inputs: [(name, path, peer kind, tensors)]."""
    n = size_mib << 20
    rng = np.random.default_rng(0)
    cases = []
    # Eight equal float32 tensors, stored .npz (the zero-copy path).
    parts = {"t%d" % i: rng.standard_normal(n // 32, dtype=np.float32) for i in range(8)}
    path = os.path.join(workdir, "big_stored.npz")
    np.savez(path, **parts)
    cases.append(("npz_stored_8x", path, "npz", 8))
    # One big-endian Fortran-order array: the conversion has to transpose and swap.
    path = os.path.join(workdir, "big_fortran_be.npy")
    arr = np.asfortranarray(rng.standard_normal((n // 4 // 1024, 1024), dtype=np.float32).astype(">f4"))
    np.save(path, arr)
    del arr
    cases.append(("npy_fortran_bigendian", path, "npy", 1))
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
        cases.append(("h5_contiguous_8x", path, "h5py", 8))
    except ImportError:
        pass
    try:
        import torch
        path = os.path.join(workdir, "big.pt")
        torch.save({k: torch.from_numpy(v) for k, v in parts.items()}, path)
        cases.append(("pt_zip_8x", path, "torch", 8))
        # The same bytes as 256 tensors, each followed by a 16 KiB one (a
        # norm's weights after a matrix): every member header and small
        # tensor lies in a 2 MiB block of its own, which the kernel maps
        # whole for a file read before (the floor's SHA-256 pass reads it).
        path = os.path.join(workdir, "big_256x.pt")
        flat = np.concatenate(list(parts.values()))
        pieces = {}
        for i, chunk in enumerate(np.split(flat[: flat.size // 256 * 256], 256)):
            pieces["w%03d" % i] = torch.from_numpy(chunk)
            pieces["w%03d_norm" % i] = torch.from_numpy(chunk[:4096].copy())
        del flat
        torch.save(pieces, path)
        del pieces
        cases.append(("pt_zip_256x_mixed", path, "torch", 512))
    except ImportError:
        pass
    return cases


def make_many(workdir, count):
    """count small tensors as .npz and as a PyTorch zip (also beside one 256 MiB tensor):
    the per-tensor costs."""
    rng = np.random.default_rng(1)
    small = {"w%06d" % i: rng.standard_normal(SMALL_ELEMS, dtype=np.float32) for i in range(count)}
    path = os.path.join(workdir, "many_small.npz")
    np.savez(path, **small)
    cases = [("npz_%d_small" % count, path, "npz", count)]
    try:
        import torch
        path = os.path.join(workdir, "many_small.pt")
        tensors = {k: torch.from_numpy(v) for k, v in small.items()}
        torch.save(tensors, path)
        cases.append(("pt_%d_small" % count, path, "torch", count))
        # The same beside one 256 MiB tensor (mixed.pt): the peak should be
        # that tensor plus a constant, not the small tensors' cost added.
        tensors["big"] = torch.zeros(64 << 20, dtype=torch.float32)
        path = os.path.join(workdir, "many_small_big.pt")
        torch.save(tensors, path)
        cases.append(("pt_%d_small_256mib" % count, path, "torch", count + 1))
    except ImportError:
        pass
    return cases


FLOOR_PIECE = 256 << 10  # the piece of the input's hasher (converter/pipeline.cc, InputHasher)


def sha256_floor(path):
    """SHA-256 of the file as safe-convert's hasher thread computes it, alone: (wall s, CPU s).

    pread into one reused 256 KiB buffer + OpenSSL's SHA-256 (hashlib is
    built on the same libcrypto.so.3, SHA-NI where the CPU has it), one
    thread. Every conversion hashes every input byte so on one thread, so
    its wall time cannot go below this (Python adds ~1 us per piece, ~4 ms
    per GiB); 1.3x `cp` is out of reach when this alone is above it."""
    h = hashlib.sha256()
    buf = bytearray(FLOOR_PIECE)
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY)
    try:
        t, c = time.perf_counter(), time.thread_time()
        off = 0
        while True:
            n = os.preadv(fd, [buf], off)
            if n <= 0:
                break
            h.update(view[:n])
            off += n
        return time.perf_counter() - t, time.thread_time() - c
    finally:
        os.close(fd)


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


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def loop_rate(sc, src, work, n, jobs):
    """One round of `jobs` shell loops converting n // jobs files each: (wall, CPU, files, ok)."""
    loop = ('i=0; while [ $i -lt %d ]; do "%s" "%s" "%s/tiny-$1-$i.safemodel" --no-sync -f '
            '>/dev/null || exit 1; i=$((i+1)); done' % (n // jobs, sc, src, work))
    cpu, t = children_cpu(), time.perf_counter()
    procs = [subprocess.Popen(["/bin/sh", "-c", loop, "sh", str(j)]) for j in range(jobs)]
    ok = all([p.wait() == 0 for p in procs])
    wall = time.perf_counter() - t
    for f in os.listdir(work):
        if f.startswith("tiny-"):
            os.unlink(os.path.join(work, f))
    return wall, children_cpu() - cpu, n // jobs * jobs, ok


def write_tiny_keras_h5(path):
    """One Dense(4) layer on 8 inputs (11 KiB), laid out as Keras 2's model.save() writes a .h5."""
    import h5py
    layers = [{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 8], "dtype": "float32",
                                                      "sparse": False, "ragged": False, "name": "dense_input"}},
              {"class_name": "Dense", "config": {"name": "dense", "trainable": True, "dtype": "float32",
                                                 "units": 4, "activation": "relu", "use_bias": True}}]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"], f.attrs["backend"] = "2.12.0", "tensorflow"
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential",
                                              "config": {"name": "sequential", "layers": layers}})
        w = f.create_group("model_weights")
        w.attrs["layer_names"] = np.array([b"dense"])
        w.attrs["keras_version"], w.attrs["backend"] = "2.12.0", "tensorflow"
        d = w.create_group("dense")
        d.attrs["weight_names"] = np.array([b"dense/kernel:0", b"dense/bias:0"])
        d["dense/kernel:0"] = np.arange(32, dtype=np.float32).reshape(8, 4)
        d["dense/bias:0"] = np.zeros(4, dtype=np.float32)


def tiny_rates(bin_dir, outdir, n, rounds):
    """The tiny-file rates, every way once per round: {(label, jobs): [(wall, CPU, files, ok)]}."""
    sc = os.path.join(bin_dir, "safe-convert")
    listing = subprocess.run([sc, "--help"], capture_output=True, text=True).stdout
    has_batch = any(line.split()[:1] == ["batch"] for line in listing.splitlines())
    work = tempfile.mkdtemp(prefix="tiny-", dir=outdir)
    try:
        # batch.py's set: n files of 16 float32 (192 bytes) in 20 folders.
        tiny_dir, _ = batch.make_sets(work, n, 0, 0)
        # n copies of a tiny Keras .h5: the HDF5 worker's rows (a hand-off each).
        h5_dir = os.path.join(work, "h5")
        write_tiny_keras_h5(os.path.join(work, "tiny.h5"))
        for i in range(n):
            os.makedirs(os.path.join(h5_dir, "d%02d" % (i % 20)), exist_ok=True)
            shutil.copy(os.path.join(work, "tiny.h5"), os.path.join(h5_dir, "d%02d" % (i % 20), "m%05d.h5" % i))
        src = os.path.join(work, "tiny.npy")
        np.save(src, np.arange(SMALL_ELEMS, dtype=np.float32))
        out = {}
        for _ in range(rounds):
            for jobs in (1, 2):
                out.setdefault(("loop of `safe-convert IN OUT`", jobs), []).append(
                    loop_rate(sc, src, work, n, jobs))
                if not has_batch:
                    continue
                for mode, label in (("exec", "batch, a worker exec'd per file"),
                                    ("fork", "batch --fork-server")):
                    # batch.run exits if any file is not converted.
                    wall, files, _ = batch.run(bin_dir, tiny_dir, os.path.join(work, "out"), jobs, mode)
                    out.setdefault((label, jobs), []).append((wall, batch.run.cpu, files, True))
                    wall, files, _ = batch.run(bin_dir, h5_dir, os.path.join(work, "out"), jobs, mode)
                    out.setdefault((label + ", tiny Keras .h5", jobs), []).append(
                        (wall, batch.run.cpu, files, True))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_case(sc, case, outdir, runs, peer_runs, durable=False):
    """Interleaved runs of one input; its table rows. durable: both outputs
    reach the disk (cp + `sync FILE`, safe-convert's default fsync)."""
    name, path, kind, tensors = case
    size = os.path.getsize(path)
    dst = os.path.join(outdir, name + ".safemodel")
    peer_dst = os.path.join(outdir, name + ".peer" + os.path.splitext(path)[1])
    m = {"cp": [], "safe-convert": [], "peer": [], "floor": []}
    ok = True
    for i in range(runs):
        w, c, _, rc, _ = run(["/bin/sh", "-c", 'cp "$0" "$1" && sync "$1"', path, dst + ".cp"] if durable
                             else ["cp", path, dst + ".cp"])
        m["cp"].append((w, c, float("nan")))  # cp's RSS is not of interest
        os.unlink(dst + ".cp")
        m["floor"].append(sha256_floor(path) + (float("nan"),))
        w, c, r, rc, out = run([sc, path, dst, "--json", "--force"] + ([] if durable else ["--no-sync"]))
        rep = json.loads(out) if out.strip().startswith(b"{") else {}
        ok = ok and rc == 0
        rss = rep.get("worker", {}).get("max_rss_bytes", 0) + rep.get("parent_max_rss_bytes", 0)
        m["safe-convert"].append((w, c, rss))
        if os.path.exists(dst):
            os.unlink(dst)
        if i < peer_runs and not durable:  # the peers do not fsync
            # Its own peak RSS, which it prints: the shell's would include
            # this process's (the shell starts as a copy of it).
            w, c, _, rc, out = run(["/usr/bin/python3", "-c", PEER, kind, path, peer_dst])
            m["peer"].append((w, c, int(out.split()[-1])) if rc == 0 else (float("nan"),) * 3)
            if os.path.exists(peer_dst):
                os.unlink(peer_dst)
    cp_wall = statistics.median(x[0] for x in m["cp"])
    floor_wall = statistics.median(x[0] for x in m["floor"])
    rows = []
    for who, label in (("safe-convert", "safe-convert"), ("cp", "cp"), ("floor", "SHA-256 floor"),
                       ("peer", "Python %s load + save" % kind)):
        if not m[who]:
            continue
        wall = statistics.median(x[0] for x in m[who])
        rows.append({"input": name if who == "safe-convert" else "", "bytes": size, "program": label,
                     "wall": wall, "x_cp": wall / cp_wall, "x_floor": wall / floor_wall,
                     "cpu": statistics.median(x[1] for x in m[who]),
                     "rss": max(x[2] for x in m[who]), "runs": len(m[who]),
                     "tensors": None if who in ("cp", "floor") else tensors,
                     "ok": ok if who == "safe-convert" else all(x[0] == x[0] for x in m[who])})  # NaN: failed
    return rows


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def print_table(rows, runs, outdir, durable=False):
    print("machine: %s, %d CPUs; load average at the end: %s; %d runs each (the peers: the number in "
          "the runs column), medians; outputs in %s (%s)%s" % (
              os.uname().release, os.cpu_count(), load_average(), runs, outdir,
              subprocess.run(["stat", "-f", "-c", "%T", outdir], capture_output=True, text=True).stdout.strip(),
              "; durable: cp + `sync FILE` against safe-convert's fsync, no peers" if durable
              else "; --no-sync, cp without sync"))
    print("| input | MiB | program | runs | s/GiB | x cp | x floor | \u00b5s/tensor | CPU s | peak RSS MiB | ok |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mib = r["bytes"] / 2**20
        per_tensor = "" if r["tensors"] is None else "%.1f" % (1e6 * r["wall"] / r["tensors"])
        rss = "" if r["rss"] != r["rss"] else "%.0f" % (r["rss"] / 2**20)  # NaN: not measured
        x_floor = "" if r.get("x_floor") is None else "%.2f" % r["x_floor"]
        print("| %s | %s | %s | %d | %.3f | %.2f | %s | %s | %.2f | %s | %s |" % (
            r["input"], "%.0f" % mib if mib >= 10 else "%.2f" % mib, r["program"], r["runs"],
            r["wall"] / (r["bytes"] / 2**30), r["x_cp"], x_floor, per_tensor, r["cpu"], rss, "yes" if r["ok"] else "NO"))


def print_tiny(rates, n):
    print("\ntiny-file rate: %d .npy files of 192 B (and, where it says so, of an 11 KiB Keras .h5), "
          "output --no-sync; medians of %d interleaved rounds; "
          "CPU of all processes (RUSAGE_CHILDREN); load average at the end: %s"
          % (n, len(next(iter(rates.values()))), load_average()))
    print("| how | -j | files | wall s | files/s | CPU ms/file | ok |")
    print("|---|---|---|---|---|---|---|")
    for (label, jobs), runs in sorted(rates.items(), key=lambda kv: kv[0][1]):
        wall = statistics.median(r[0] for r in runs)
        files = runs[0][2]
        print("| %s | %d | %d | %.2f | %.0f | %.2f | %s |" % (
            label, jobs, files, wall, files / wall, 1e3 * statistics.median(r[1] for r in runs) / files,
            "yes" if all(r[3] for r in runs) else "NO"))


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("--size-mib", type=int, nargs="+", default=[1024])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", default="/tmp/safemodel-bench")
    ap.add_argument("--outdir", default=None,
                    help="where outputs go (default: workdir); /dev/shm takes disk writeback out")
    ap.add_argument("--tiny", type=int, default=200, help="tiny files per rate (0: none)")
    ap.add_argument("--many", type=int, default=100000, help="tensors of the many-tensor inputs (0: none)")
    ap.add_argument("--no-peers", action="store_true", help="skip the Python peers")
    ap.add_argument("--peer-runs", type=int, default=1,
                    help="runs of each Python peer, in the first rounds (they are slow)")
    ap.add_argument("--durable", action="store_true",
                    help="the table with durable outputs: cp + sync FILE, safe-convert with its fsync "
                         "(--outdir on a disk; no peers)")
    ap.add_argument("--linearity-gib", type=int, default=0,
                    help="also compare an N GiB PyTorch zip with a 1 GiB one (linearity.py)")
    ap.add_argument("--linearity-dir", default=None,
                    help="disk directory for the linearity case (default: WORKDIR/linearity)")
    ap.add_argument("--linearity-runs", type=int, default=1, help="runs of the N GiB case (1 GiB: --runs)")
    ap.add_argument("--linearity-warm", action="store_true",
                    help="read the linearity inputs once before each run (warm) instead of dropping their pages (cold)")
    ap.add_argument("--linearity-only", action="store_true", help="only the linearity case")
    ap.add_argument("--linearity-durable", action="store_true",
                    help="make both outputs durable (cp + sync FILE; safe-convert's fsync) in the linearity case")
    a = ap.parse_args()
    a.peer_runs = 0 if a.no_peers else min(a.peer_runs, a.runs)
    return a


def main():
    a = parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    outdir = a.outdir or a.workdir
    os.makedirs(outdir, exist_ok=True)
    sc = os.path.join(a.bin_dir, "safe-convert")
    if not a.linearity_only:
        rows = []
        for i, size_mib in enumerate(a.size_mib):
            cases = make_big(a.workdir, size_mib)
            if i == 0 and a.many:
                cases += make_many(a.workdir, a.many)
            for case in cases:
                rows += measure_case(sc, case, outdir, a.runs, a.peer_runs, a.durable)
                os.unlink(case[1])
        print_table(rows, a.runs, outdir, a.durable)
        if a.tiny:
            print_tiny(tiny_rates(a.bin_dir, outdir, a.tiny, a.runs), a.tiny)
        sys.stdout.flush()
    if a.linearity_gib:
        import linearity
        linearity.run(a.bin_dir, a.linearity_dir or os.path.join(a.workdir, "linearity"), a.linearity_gib,
                      a.runs, a.linearity_runs, cold=not a.linearity_warm, durable=a.linearity_durable)


if __name__ == "__main__":
    sys.exit(main())
