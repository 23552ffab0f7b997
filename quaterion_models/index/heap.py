"""Give the C heap's free pages back to the system after a large temporary allocation."""

import ctypes
from typing import Callable, Optional


def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (macOS, musl,
    Windows)."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):
        return None


def release_free_heap() -> bool:
    """Return the free memory of the C heap to the system (``malloc_trim(0)``).

    A graph build frees hundreds of MB that glibc otherwise keeps mapped (and counted in the
    process's resident memory) for later allocations. Returns whether anything could be
    asked; ``False`` where the C library has no such call.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
