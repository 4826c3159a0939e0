"""The canary: importing this module is the proof that a loader ran code
from a file. Payloads in the differential harness's variants name it
(GLOBAL safemodel_canary fire); a real unpickler imports it to resolve the
name, and the import writes the marker file the harness looks for."""
import os

_marker = os.environ.get("SAFEMODEL_CANARY_MARKER")
if _marker:
    with open(_marker, "a") as f:
        f.write("imported\n")


def fire(*args, **kwargs):
    if _marker:
        with open(_marker, "a") as f:
            f.write("called\n")
    return None
