#!/usr/bin/python3
"""Captures real worker output streams as seeds for worker_stream_fuzzer.
Usage: make_worker_stream_seeds.py BIN_DIR (the build's bin directory)."""
import fcntl
import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
worker = os.path.join(sys.argv[1], "safemodel-worker")
inputs = {"mlp": "examples/models/mlp.npz", "fortran": "tests/fixtures/numpy/fortran_big_f64.npy",
          "refused": "tests/fixtures/numpy/object_member.npz",
          "malformed": "tests/fixtures/numpy/truncated.npy"}


def high(fd):
    """Moves fd above the numbers the worker uses, so no dup2 clobbers it."""
    h = fcntl.fcntl(fd, fcntl.F_DUPFD, 200)
    os.close(fd)
    return h


for name, rel in inputs.items():
    src = os.path.join(ROOT, rel)
    out = os.path.join(HERE, "worker_stream", name + ".frames")
    r, w = os.pipe()  # the channel must be a pipe: the worker runs with RLIMIT_FSIZE = 0
    r, w = high(r), high(w)
    fin = high(os.open(src, os.O_RDONLY))
    # The control channel: the go-ahead the worker waits for after its LOCKED
    # frame, sent up front (the parent's /proc check is not part of a seed).
    parent_sock, child_sock = socket.socketpair()
    parent_end, control = high(parent_sock.detach()), high(child_sock.detach())
    os.write(parent_end, b"G")
    os.dup2(w, 3)
    os.dup2(fin, 4)
    os.dup2(control, 5)
    proc = subprocess.Popen([worker, "--parent-pid=%d" % os.getpid(),
                             "--input-size=%d" % os.path.getsize(src),
                             "--address-space=%d" % (8 << 30), "--memory-limit=%d" % (1 << 30),
                             "--cpu-seconds=60"], pass_fds=(3, 4, 5), env={})
    for fd in (w, fin, control, 3, 4, 5):
        os.close(fd)
    with open(out, "wb") as fout:
        while True:
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            fout.write(chunk)
    os.close(r)
    proc.wait()
    os.close(parent_end)
    print(name, os.path.getsize(out), "exit", proc.returncode)
