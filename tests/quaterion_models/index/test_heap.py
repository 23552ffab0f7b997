"""release_free_heap gives freed C-heap pages back to the system (glibc's malloc_trim)."""

import ctypes

from quaterion_models.index.heap import release_free_heap


def resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_freed_heap_pages_leave_the_resident_set():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4000) for _ in range(40_000)]  # 160 MB of small heap blocks
    for block in blocks:
        ctypes.memset(block, 1, 4000)  # touched: resident
    fence = libc.malloc(4000)  # keeps the freed blocks off the heap's top (no automatic trim)
    for block in blocks:
        libc.free(block)
    before = resident_kib()
    assert release_free_heap() is True
    after = resident_kib()
    libc.free(fence)
    assert before - after > 100_000  # most of the 160 MB went back
