"""The process's memory figures from ``/proc/self/status`` (no torch: the ONNX benchmark's
torch-free child uses them)."""

import os
import resource
import select
import subprocess
import sys
from typing import Optional


def status_kib(field: str, pid: Optional[int] = None) -> float:
    """A ``kB`` field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``, ``RssAnon``), or of
    process ``pid``'s; NaN where the file or the field is missing."""
    try:
        with open(f"/proc/{pid or 'self'}/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def reset_peak() -> bool:
    """Reset the peak resident memory (``VmHWM``) to the current one; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_mib() -> float:
    """Peak resident memory in MiB since the last :func:`reset_peak` (``ru_maxrss`` without
    ``/proc``)."""
    peak = status_kib("VmHWM")
    if peak != peak:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024


def current_mib() -> float:
    """Resident memory in MiB now (NaN without ``/proc``)."""
    return status_kib("VmRSS") / 1024


class PeakWatcher:
    """Largest resident set (MiB) of this process inside a ``with`` block, and its anonymous
    (``RssAnon``) and file-backed (``RssFile``) parts at that moment, sampled every 50 ms by a
    child process: a thread here would miss native code that holds the GIL (a graph build).
    After the block: ``total``, ``anon``, ``file`` (NaN without ``/proc``)."""

    def __init__(self):
        self.total = self.anon = self.file = float("nan")

    def __enter__(self) -> "PeakWatcher":
        command = [sys.executable, "-m", "benchmarks._memory", str(os.getpid())]
        self.child = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        return self

    def __exit__(self, *exc) -> None:
        out, _ = self.child.communicate(timeout=60)  # closing stdin ends its loop
        if out.strip():
            self.total, self.anon, self.file = (float(x) for x in out.split())


def _watch(pid: int) -> None:
    """The child of :class:`PeakWatcher`: sample ``pid`` until stdin closes, print the peak."""
    best = (float("nan"),) * 3
    while not select.select([sys.stdin], [], [], 0.05)[0]:
        anon, file = status_kib("RssAnon", pid) / 1024, status_kib("RssFile", pid) / 1024
        if not anon + file <= best[0]:  # also replaces NaN
            best = (anon + file, anon, file)
    print(*best)


if __name__ == "__main__":
    _watch(int(sys.argv[1]))
