#!/usr/bin/python3
"""The timeline of one conversion, per thread (tests/bench/PROFILE.md, branch `datapath`).

  tests/bench/timeline.py BIN_DIR INPUT OUTPUT [--perf-data FILE]

Runs `safe-convert INPUT OUTPUT --no-sync -q` (OUTPUT must not exist; it is
removed after) under `perf record -a` with
scheduler and system-call tracepoints (root, or perf_event_paranoid -1) and
prints, in milliseconds from the exec of safe-convert: the milestones (hasher
thread started, its first and last pread, the worker's exec, the first and
last TENSOR_REF pread and output write of the main thread, the header
rewrite (pwrite), the final ftruncate, linkat/renameat2 (the commit), exit),
and per thread: on-CPU time, how often it was preempted (switched out while
runnable) and how long it waited runnable for a CPU.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

EVENTS = ["sched:sched_switch", "sched:sched_wakeup", "sched:sched_process_exec",
          "task:task_newtask", "syscalls:sys_enter_pread64", "syscalls:sys_enter_write",
          "syscalls:sys_enter_pwrite64", "syscalls:sys_enter_ftruncate", "syscalls:sys_enter_fallocate",
          "syscalls:sys_enter_linkat", "syscalls:sys_enter_renameat2",
          "syscalls:sys_enter_exit_group"]

LINE = re.compile(r"^\s*(?P<comm>.+?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+"
                  r"(?P<time>\d+\.\d+):\s+(?P<event>[\w:]+):\s*(?P<rest>.*)$")


def record(bin_dir, src, dst, data):
    sc = os.path.join(bin_dir, "safe-convert")
    cmd = ["perf", "record", "-q", "-a", "-o", data]
    for e in EVENTS:
        cmd += ["-e", e]
    cmd += ["--", sc, src, dst, "--no-sync", "-f", "-q"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def parse(data):
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,pid,tid,cpu,time,event,trace"],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            yield (m["comm"], int(m["pid"]), int(m["tid"]), int(m["cpu"]), float(m["time"]),
                   m["event"].split(":")[-1], m["rest"])


def field(rest, name):
    m = re.search(r"\b%s:\s*(0x[0-9a-f]+|-?\d+)" % name, rest)
    if not m:
        m = re.search(r"\b%s=(\S+)" % name, rest)
    if not m:
        return None
    v = m.group(1)
    try:
        return int(v, 0)
    except ValueError:
        return v


def analyse(events):
    t0 = None
    ours = set()          # tids of safe-convert, its threads and the worker
    parent_pid = None
    comm_of = {}
    miles = collections.OrderedDict()
    first = {}

    def cpu_now(t):
        # Each thread's on-CPU time so far, the running ones up to t.
        return {k: oncpu[k] + (t - since[k] if k in since else 0.0) for k in ours}

    def mark(key, t):
        if key not in first:
            first[key] = (t, cpu_now(t))
        miles[key] = (t, cpu_now(t))

    oncpu = collections.defaultdict(float)
    since = {}
    runnable_since = {}
    waited = collections.defaultdict(float)
    preempted = collections.defaultdict(int)
    preads = collections.defaultdict(int)
    writes = collections.defaultdict(int)
    pending = []
    for comm, pid, tid, cpu, t, ev, rest in events:
        if ev == "sched_process_exec" and "safe-convert" in rest and t0 is None:
            t0, parent_pid = t, pid
            ours.add(tid)
            comm_of[tid] = "safe-convert (main)"
            continue
        if t0 is None:
            continue
        if ev == "task_newtask" and pid in ours | {parent_pid}:
            child = field(rest, "pid")
            ours.add(child)
            if tid == parent_pid:
                comm_of.setdefault(child, "thread %d" % child)
            mark("new task %d from %d" % (child, tid), t)
        if ev == "sched_process_exec" and tid in ours:
            comm_of[tid] = "worker"
            mark("exec of the worker", t)
        if ev == "sched_switch":
            prev, nxt = field(rest, "prev_pid"), field(rest, "next_pid")
            state = field(rest, "prev_state")
            if prev in ours and prev in since:
                oncpu[prev] += t - since.pop(prev)
                if isinstance(state, str) and state.startswith("R"):
                    preempted[prev] += 1
                    runnable_since[prev] = t
            if nxt in ours:
                since[nxt] = t
                if nxt in runnable_since:
                    waited[nxt] += t - runnable_since.pop(nxt)
            continue
        if ev == "sched_wakeup":
            woken = field(rest, "pid")
            if woken in ours:
                runnable_since[woken] = t
            continue
        if tid not in ours:
            continue
        who = comm_of.get(tid, comm)
        if ev == "sys_enter_pread64":
            preads[tid] += 1
            mark("%s: pread" % who, t)
        elif ev == "sys_enter_write":
            writes[tid] += 1
            mark("%s: write" % who, t)
        elif ev in ("sys_enter_pwrite64", "sys_enter_ftruncate", "sys_enter_fallocate", "sys_enter_linkat",
                    "sys_enter_renameat2", "sys_enter_exit_group"):
            mark("%s: %s" % (who, ev[len("sys_enter_"):]), t)
    rows = []
    for k, (t, cpu) in first.items():
        rows.append((t, k + " (first)", cpu))
        if miles[k][0] != t:
            rows.append((miles[k][0], k + " (last)", miles[k][1]))
    rows.sort(key=lambda r: r[0])
    threads = sorted((x for x in ours if oncpu[x] > 0), key=lambda x: -oncpu[x])
    print("milestones: ms from the exec of safe-convert, then each thread's on-CPU ms so far (%s)"
          % ", ".join(comm_of.get(x, str(x)) for x in threads))
    for t, k, cpu in rows:
        print("  %9.2f  %-45s %s" % (1e3 * (t - t0), k, " ".join("%7.1f" % (1e3 * cpu.get(x, 0.0)) for x in threads)))
    print("\nper thread: on-CPU ms, preempted (switched out runnable), ms waiting runnable, preads, writes")
    for tid in sorted(ours, key=lambda x: -oncpu[x]):
        if oncpu[tid] == 0:
            continue
        print("  %-40s %8.1f %6d %8.1f %6d %6d" % (comm_of.get(tid, str(tid)) + " [%d]" % tid,
                                                   1e3 * oncpu[tid], preempted[tid], 1e3 * waited[tid],
                                                   preads[tid], writes[tid]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--perf-data", default=None, help="keep the recording here (default: a temporary file)")
    a = ap.parse_args()
    if os.path.exists(a.output):
        # Replacing it would free its pages inside the conversion's rename.
        sys.exit("%s exists: remove it first" % a.output)
    data = a.perf_data or tempfile.mktemp(suffix=".perf.data")
    try:
        record(a.bin_dir, a.input, a.output, data)
        analyse(parse(data))
    finally:
        if os.path.exists(a.output):
            os.unlink(a.output)
        if a.perf_data is None and os.path.exists(data):
            os.unlink(data)


if __name__ == "__main__":
    sys.exit(main())
