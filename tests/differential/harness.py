#!/usr/bin/python3
"""Differential test harness: safe-convert against the real loaders.

Every module tests/differential/variants_*.py is imported; each exports
generate(rng, outdir) -> list of dict with "name", "path" (a file it wrote
under outdir), "kind" (npy, npz, h5, torch, joblib, pickle, or any: try every
loader) and optionally "expect" ("refuse", "convert" or None) and "note".
For each variant the harness runs safe-convert and the loaders that fit the
kind (torch.load, torch.load(weights_only=True), joblib.load, np.load with
and without allow_pickle, pickle.load, h5py) in throwaway forked processes
(loader_server.py) with a canary: a payload naming the module
safemodel_canary, whose import writes a marker file. It fails when

  - safe-convert converted (exit 0) and a loader ran the canary, or read a
    structure its framework would run as code (a Keras Lambda via h5py);
  - safe-convert converted and a loader that accepted the file returned
    other tensors (dtype, shape, SHA-256 of the little-endian C-order bytes;
    for h5py every converted tensor must be one of the file's datasets);
  - safe-convert crashed (exit 5, 70) or contradicted the variant's "expect".

A variant may carry "loaders_read": [loader, ...]: those loaders must read
the file without running the canary, whatever safe-convert does (a refusal
that is deliberate, where the real loader reads the file, is shown so), and
"refuse_message": a text safe-convert's refusal must contain (that it is
the refusal the variant is about).

A variant may carry "known": "<why, which issue>": its failures are printed
as KNOWN and do not fail the run (a differential found, owned elsewhere).

Usage:
  harness.py --safe-convert build/release/bin/safe-convert [--seed 1]
             [--count N] [--only SUBSTRING] [--keep DIR] [--verbose]
--count N runs N variants: the generators are called again with new random
choices (rounds) until N are collected. The default runs one round. Exit 0
when no variant failed, 1 otherwise, 77 (skipped) when a loader library is
missing."""
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import argparse  # noqa: E402
import glob  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

ALL_LOADERS = ["torch", "torch_weights_only", "joblib", "pickle", "np_load", "np_load_pickle",
               "h5py", "zipfile"]
# Which loaders could be pointed at a file of each kind. Polyglots matter
# across formats, so the lists are broad; "primary" loaders are the ones a
# converted file must match exactly (others only when they return tensors).
LOADERS = {
    "npy": (["np_load", "np_load_pickle", "torch", "pickle", "joblib"], ["np_load"]),
    "npz": (["np_load", "np_load_pickle", "torch", "h5py", "zipfile"], ["np_load"]),
    "h5": (["h5py", "torch", "pickle", "joblib", "np_load_pickle"], ["h5py"]),
    "torch": (["torch", "torch_weights_only", "pickle", "joblib", "np_load_pickle", "zipfile"],
              ["torch"]),
    "joblib": (["joblib", "pickle", "np_load_pickle", "torch"], ["joblib"]),
    "pickle": (["pickle", "joblib", "np_load_pickle", "torch"], ["pickle"]),
    "any": (ALL_LOADERS, []),
}
EXIT_NAMES = {0: "converted", 1: "refused", 2: "usage", 3: "malformed", 4: "limit",
              5: "sandbox", 6: "io", 70: "internal"}


def load_generators(only_module=None):
    mods = []
    for path in sorted(glob.glob(os.path.join(HERE, "variants_*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if only_module and only_module not in name:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if not hasattr(mod, "generate"):
            raise SystemExit("%s has no generate(rng, outdir)" % path)
        mods.append((name, mod))
    return mods


def collect(mods, seed, count, workdir):
    """Variants from the generators, round by round, until `count`; modules
    take turns, so that a bounded count samples every module."""
    per_round, round_no, total = [], 0, 0
    while True:
        lists = []
        for name, mod in mods:
            outdir = os.path.join(workdir, "r%d" % round_no, name)
            os.makedirs(outdir, exist_ok=True)
            rng = random.Random("%s/%d/%s" % (seed, round_no, name))
            got = []
            for v in mod.generate(rng, outdir):
                for k in ("name", "path", "kind"):
                    if k not in v:
                        raise SystemExit("%s: a variant lacks %r" % (name, k))
                if v["kind"] not in LOADERS:
                    raise SystemExit("%s: variant %s has unknown kind %r" % (name, v["name"], v["kind"]))
                v = dict(v)
                v["module"] = name
                v["round"] = round_no
                got.append(v)
            lists.append(got)
            total += len(got)
        per_round.append(lists)
        round_no += 1
        if count is None or total >= count or round_no > 10_000:
            break
    variants = []
    for lists in per_round:
        longest = max((len(l) for l in lists), default=0)
        for i in range(longest):
            variants.extend(l[i] for l in lists if i < len(l))
    return variants if count is None else variants[:count]


class Loaders:
    def __init__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "loader_server.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.next_id = 0

    def run(self, loader, path, timeout):
        self.next_id += 1
        req = {"id": self.next_id, "loader": loader, "path": path, "timeout": timeout}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the loader server died")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def start_safe_convert(binary, path, workdir, timeout):
    out = os.path.join(workdir, "out.safemodel")
    report = os.path.join(workdir, "report.json")
    for p in (out, report):
        if os.path.exists(p):
            os.unlink(p)
    proc = subprocess.Popen([binary, "--timeout", str(timeout), "--report", report, path, out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, out, timeout


def finish_safe_convert(started):
    proc, out, timeout = started
    try:
        _, err = proc.communicate(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"exit": -1, "message": "safe-convert did not finish", "tensors": None}
    err = err.strip().splitlines()
    res = {"exit": proc.returncode, "message": err[-1] if err else "", "tensors": None}
    if proc.returncode == 0:
        import safemodel_reader
        model = safemodel_reader.read(out)
        res["tensors"] = [[t["dtype"], list(t["shape"]), t["sha256"]]
                          for t in model["tensors"].values()]
    return res


def key(t):
    return (t[0], tuple(t[1]), t[2])


def judge(v, sc, results):
    """Failure messages for one variant."""
    fails = []
    if sc["exit"] in (5, 70, -1):
        fails.append("safe-convert crashed or hung: exit %s (%s)" % (sc["exit"], sc["message"]))
    if v.get("expect") == "refuse" and sc["exit"] == 0:
        fails.append("expected a refusal, safe-convert converted")
    if v.get("expect") == "convert" and sc["exit"] != 0:
        fails.append("expected a conversion, safe-convert exited %d (%s)" % (sc["exit"], sc["message"]))
    if v.get("refuse_message") and (sc["exit"] == 0 or v["refuse_message"] not in sc["message"]):
        fails.append("expected the refusal %r, safe-convert exited %d (%s)" %
                     (v["refuse_message"], sc["exit"], sc["message"][:200]))
    for r in results:
        if r["loader"] in v.get("loaders_read", ()) and (not r["ok"] or r["canary"]):
            fails.append("%s was to read the file: %s" % (
                r["loader"], "it ran the canary" if r["canary"] else
                "it failed (%s)" % str(r.get("error", ""))[:200]))
    missing = set(v.get("loaders_read", ())) - {r["loader"] for r in results}
    if missing:
        fails.append("loaders_read names loaders not run for kind %s: %s" %
                     (v["kind"], sorted(missing)))
    if sc["exit"] != 0:
        return fails
    primary = LOADERS[v["kind"]][1]
    ours = sorted(key(t) for t in sc["tensors"])
    for r in results:
        if r["canary"]:
            fails.append("converted, but %s ran the canary" % r["loader"])
        if r["code"]:
            fails.append("converted, but what %s read holds code (a Keras Lambda)" % r["loader"])
        if not r["ok"] or not r["comparable"]:
            continue
        theirs = sorted(key(t) for t in r["tensors"])
        if r["loader"] == "h5py":
            missing = [t for t in ours if t not in set(theirs)]
            if missing:
                fails.append("converted tensors that h5py does not read: %s" % (missing[:3],))
        elif r["loader"] in primary or theirs:
            if theirs != ours:
                fails.append("converted, but %s reads other tensors: %d vs %d, first difference %s"
                             % (r["loader"], len(theirs), len(ours),
                                next(((a, b) for a, b in zip(theirs, ours) if a != b),
                                     "(count)")))
    return fails


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--safe-convert", required=True, help="path to the safe-convert binary")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--count", type=int, default=None, help="variants to run (default: one round)")
    ap.add_argument("--only", default=None, help="run only variants whose name contains this")
    ap.add_argument("--module", default=None, help="use only generators whose module name contains this")
    ap.add_argument("--keep", default=None, help="write variants here and keep them")
    ap.add_argument("--timeout", type=int, default=20, help="seconds per loader and per conversion")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--sanitizer-build", action="store_true",
                    help="safe-convert is an ASan build: skip random HDF5 mutations (libhdf5 asks "
                         "for absurd allocations on them, which ASan turns into an abort in the "
                         "sandboxed worker, whose empty environment cannot relax it)")
    args = ap.parse_args()
    try:
        import h5py, joblib, numpy, torch  # noqa: F401,E401
    except ImportError as e:
        print("skipped: %s" % e)
        return 77
    binary = os.path.abspath(args.safe_convert)
    if not os.access(binary, os.X_OK):
        raise SystemExit("not an executable: %s" % binary)
    workdir = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="differential_")
    os.makedirs(workdir, exist_ok=True)
    start = time.monotonic()
    try:
        variants = collect(load_generators(args.module), args.seed, args.count, workdir)
        if args.only:
            variants = [v for v in variants if args.only in v["name"]]
        if args.sanitizer_build:
            variants = [v for v in variants
                        if not (v["module"] == "variants_mutations" and v["kind"] == "h5")]
        loaders = Loaders()
        failed = 0
        scratch = os.path.join(workdir, "scratch")
        os.makedirs(scratch, exist_ok=True)
        for v in variants:
            # safe-convert and the loaders run side by side (two cores).
            started = start_safe_convert(binary, v["path"], scratch, args.timeout)
            results = [loaders.run(l, os.path.abspath(v["path"]), args.timeout)
                       for l in LOADERS[v["kind"]][0]]
            sc = finish_safe_convert(started)
            fails = judge(v, sc, results)
            known = v.get("known")
            failed += bool(fails) and not known
            ran = ",".join(r["loader"] for r in results if r["ok"]) or "-"
            fired = ",".join(r["loader"] for r in results if r["canary"] or r["code"]) or "-"
            status = ("KNOWN" if known else "FAIL") if fails else "ok"
            if fails or args.verbose:
                print("%-5s %-34s %-10s loaders ok: %-40s code: %s" %
                      (status, v["module"][9:] + "/" + v["name"],
                       EXIT_NAMES.get(sc["exit"], str(sc["exit"])), ran, fired))
                if args.verbose and sc["exit"] != 0:
                    print("       safe-convert: %s" % sc["message"][:200])
                for f in fails:
                    print("       " + f)
                if fails and known:
                    print("       known: " + known)
        loaders.close()
        modules = sorted({v["module"] for v in variants})
        print("%d variants from %d generator module(s) (%s), seed %s: %d failed (%.1f s)" %
              (len(variants), len(modules), ", ".join(m[9:] for m in modules), args.seed, failed,
               time.monotonic() - start))
        return 1 if failed else 0
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
