"""Hand freed heap back to the OS after calls: the fix for the per-call RSS growth (docs/memory.md).

Each offline-engine call builds and frees ~20 MB of native heap in hundreds of thousands of allocations
(the pocketsphinx decoder's LM, dictionary and search tables) on the engine's worker threads, next to
longer-lived allocations (TTS buffers, onnxruntime's arena, Python objects). glibc keeps what is freed
inside its arenas: the holes between live chunks are never unmapped, later requests that do not fit a
hole extend the heap, and the worker's RSS rose ~10 MB per call with the bytes in use constant
(``mallinfo2``: ``uordblks`` flat, ``arena``/``fordblks`` growing). ``malloc_trim(0)`` returns every free
page inside every arena (``madvise(MADV_DONTNEED)``), not only the top of the heap, which is what the
automatic trim (``M_TRIM_THRESHOLD``) does; see malloc_trim(3).

There is no Python binding, so it is called through ctypes; on a C library without it (musl, macOS) the
trim is a no-op and ``available`` says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger("runtime.engine.memory")


def _load_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load_trim()
available = _TRIM is not None


def release_free_heap() -> float:
    """Return free heap pages of all malloc arenas to the OS; returns the seconds it took (0 if unavailable).

    Blocking (it takes each arena's lock in turn, a few ms on a few hundred MB): call it from a worker
    thread, never on the event loop.
    """
    if _TRIM is None:
        return 0.0
    started = time.perf_counter()
    _TRIM(0)
    took = time.perf_counter() - started
    log.debug("malloc_trim took %.1f ms", took * 1000)
    return took
