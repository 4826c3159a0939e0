#!/usr/bin/python3
"""Loading an untrusted PyTorch checkpoint with safemodel.torch.load instead of torch.load.

    PYTHONPATH=build/release/python /usr/bin/python3 examples/torch_checkpoint.py [DIR]

1. Saves the state_dict of a small network (conv, batch norm, linear) with torch.save: the
   "downloaded" checkpoint, in DIR (default: a temporary directory).
2. Loads it with safemodel.torch.load (converted in the sandbox, never unpickled here) into
   a fresh network, runs it, and compares the output with the same network loaded the
   trusted way (torch.load of the original): they must be identical.
3. Saves a malicious checkpoint (a pickle whose loading would run os.system to create a
   canary file) and shows that safemodel.torch.load refuses it, naming what it refused,
   and that the canary never appears.
Exits 0 when all of that holds, 1 otherwise (77 without torch).
"""
import os
import sys
import tempfile

try:
    import torch
except ImportError:
    print("SKIP: torch is not installed")
    sys.exit(77)

import safemodel
import safemodel.torch


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, kernel_size=3, padding=1)
        self.bn = torch.nn.BatchNorm2d(6)
        self.fc = torch.nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(x.flatten(1))


class Payload:
    """What an attacker pickles: unpickling it calls os.system(command)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def main(workdir):
    torch.manual_seed(0)
    trained = SmallNet()
    trained.train()(torch.randn(16, 1, 8, 8))  # gives the batch norm running statistics
    checkpoint = os.path.join(workdir, "small_net.pt")
    torch.save(trained.state_dict(), checkpoint)

    untrusted = SmallNet().eval()
    state = safemodel.torch.load(checkpoint)
    untrusted.load_state_dict(state, strict=True)

    trusted = SmallNet().eval()
    trusted.load_state_dict(torch.load(checkpoint))  # the reference: we made this file

    x = torch.linspace(-1, 1, 2 * 64).reshape(2, 1, 8, 8)
    with torch.no_grad():
        got, want = untrusted(x), trusted(x)
    same = torch.equal(got, want)
    print("%d tensors loaded through the sandbox; outputs %s the trusted load's"
          % (len(state), "equal" if same else "DIFFER FROM"))
    print(got)

    canary = os.path.join(workdir, "canary")
    evil = os.path.join(workdir, "evil.pt")
    torch.save({"fc.weight": torch.zeros(5, 96), "fc.bias": Payload("touch '%s'" % canary)}, evil)
    refused = False
    try:
        safemodel.torch.load(evil)
    except safemodel.RefusedError as e:
        refused = True
        for finding in e.report.findings:
            print("refused: %s at %s (%s)" % (finding["rule"], finding["location"],
                                              ", ".join(finding["references"])))
    ran = os.path.exists(canary)
    print("malicious checkpoint %s; canary %s" % ("refused" if refused else "NOT REFUSED",
                                                  "CREATED" if ran else "never created"))
    return 0 if same and refused and not ran else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1]))
    with tempfile.TemporaryDirectory() as d:
        sys.exit(main(d))
