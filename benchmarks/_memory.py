"""The process's memory figures from ``/proc/self/status`` (no torch: the ONNX benchmark's
torch-free child uses them)."""

import resource


def status_kib(field: str) -> float:
    """A ``kB`` field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``, ``RssAnon``); NaN where
    the file or the field is missing."""
    try:
        with open("/proc/self/status") as handle:
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
